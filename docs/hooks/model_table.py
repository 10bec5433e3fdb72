"""mkdocs hook: replace ``<!-- model-table -->`` with a table generated from the zoo's registry."""

from __future__ import annotations

import attnzoo

MARKER = "<!-- model-table -->"


def model_table() -> str:
    rows = [
        "| model | aliases | task | package | paper | weights |",
        "|---|---|---|---|---|---|",
    ]
    for name in attnzoo.list_models():
        card = attnzoo.info(name)
        paper = (
            f"[{card.paper.arxiv}](https://arxiv.org/abs/{card.paper.arxiv})"
            if card.paper.arxiv
            else card.paper.title
        )
        weights = ", ".join(f"`{w.tag}`" for w in card.weights) or "—"
        aliases = ", ".join(f"`{a}`" for a in card.aliases) or "—"
        rows.append(
            f"| `{name}` | {aliases} | {card.task} | {card.package} {card.version} | {paper} | {weights} |"
        )
    return "\n".join(rows)


def on_page_markdown(markdown: str, **kwargs) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, model_table())
    return markdown
