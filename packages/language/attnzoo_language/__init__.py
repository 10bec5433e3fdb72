"""attnzoo-language: decoder language models with a token mixer chosen per layer.

``attnzoo_language.modeling`` holds the transformers-native model (importing it registers the
config with ``AutoConfig`` / ``AutoModel`` / ``AutoModelForCausalLM``); ``attnzoo_language.mixers``
the mixers (softmax, MoH, Causal Grassmann, Deconstructing-attention variants). This module stays
torch-free so that the zoo can list models cheaply.
"""

__version__ = "0.1.0"
