"""Relative self-attention with the skewing trick (Huang et al. 2019, section 3.4.1), in PyTorch.

Both paths compute ``S_rel = Q E^T`` against the ``O(L D)`` table of offset embeddings and then
*skew* it so that column ``m`` (an offset) lands on column ``j`` (a key position), instead of
gathering the ``(L, L, D)`` relative tensor the way the reference does.

* :func:`relative_attention_skew` is the paper's construction on the full ``(L, L)`` logits: pad a
  column, reshape, slice (tensor2tensor's ``_relative_position_to_absolute_position_masked`` and
  ``..._unmasked``). Autograd differentiates it; it keeps ``O(B H L^2)`` activations like ordinary
  attention.
* :func:`relative_attention_chunked` runs the same skew on blocks of ``block_size`` queries, with a
  hand-written backward that recomputes each block from the saved log-sum-exp (flash-attention
  style). Extra memory is ``O(L D)`` for the offset table plus ``O(block_size * L)`` per (batch,
  head) for one block's logits, in the forward pass and in the backward pass.

Conventions for ``rel_emb`` are those of :mod:`.naive`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .naive import check_relative_inputs, max_relative_position

__all__ = [
    "skewed_relative_logits",
    "relative_attention_skew",
    "relative_attention_chunked",
    "offset_table",
    "DEFAULT_BLOCK_SIZE",
]

DEFAULT_BLOCK_SIZE = 512

# Output buffers of the chunked forward; tests swap in a NaN-filled allocator to catch unwritten rows.
_new_buffer = torch.empty


def offset_table(rel_emb: Tensor, length: int, causal: bool) -> Tensor:
    """The embeddings of every offset ``o = j - i`` in ``-(L-1) .. L-1`` at row ``o + L - 1``.

    Shape ``(..., 2L - 1, D)``; rows outside the learned range are zero (tensor2tensor pads with
    zeros before slicing). ``F.pad`` with a negative width crops, which covers ``R > L``.
    """
    R = max_relative_position(rel_emb, causal)
    before = length - R
    after = (2 * length - 1) - before - rel_emb.shape[-2]
    return F.pad(rel_emb, (0, 0, before, after))


def skewed_relative_logits(q: Tensor, rel_emb: Tensor, *, causal: bool = True) -> Tensor:
    """The paper's ``S_rel[i, j] = q_i . E[j - i]`` as ``(B, H, L, L)``, through the skewing trick (unscaled).

    Causal: entries with ``j > i`` are unspecified (they are masked by the caller).
    """
    B, H, L, _ = q.shape
    table = offset_table(rel_emb, L, causal)
    if causal:
        # Offsets -(L-1)..0 in column m = o + L - 1; pad one column in front, view as (L+1, L) and
        # drop the first row: row i now holds column j - i + L - 1 at position j (for j <= i).
        relative = q @ table[..., :L, :].transpose(-1, -2)
        return F.pad(relative, (1, 0)).reshape(B, H, L + 1, L)[:, :, 1:, :]
    # Offsets -(L-1)..L-1 in 2L-1 columns; pad one column and L-1 trailing elements, view as
    # (L+1, 2L-1): row i, column j + L - 1 is the original column j - i + L - 1.
    relative = q @ table.transpose(-1, -2)
    relative = F.pad(relative, (0, 1)).reshape(B, H, 2 * L * L)
    return F.pad(relative, (0, L - 1)).reshape(B, H, L + 1, 2 * L - 1)[:, :, :L, L - 1 :]


def relative_attention_skew(
    q: Tensor, k: Tensor, v: Tensor, rel_emb: Tensor, *, causal: bool = True, scale: float | None = None
) -> Tensor:
    """The paper's skewing trick over the full logits matrix; see the module docstring."""
    check_relative_inputs(q, k, v, rel_emb, causal)
    L, D = q.shape[2], q.shape[3]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    logits = (q @ k.transpose(-1, -2) + skewed_relative_logits(q, rel_emb, causal=causal)) * scale
    if causal:
        future = torch.ones(L, L, dtype=torch.bool, device=q.device).triu_(1)
        logits = logits.masked_fill(future, float("-inf"))
    return torch.softmax(logits, dim=-1) @ v


def _block_keys(start: int, rows: int, length: int, causal: bool) -> int:
    """How many keys the query block ``start .. start+rows`` sees."""
    return start + rows if causal else length


def _block_table(table: Tensor, start: int, rows: int, keys: int, length: int) -> Tensor:
    """Rows of the offset table for offsets ``-(start+rows-1) .. keys-1-start`` (width keys+rows-1)."""
    first = length - start - rows
    return table[..., first : first + keys + rows - 1, :]


def _skewed(relative: Tensor, rows: int, keys: int) -> Tensor:
    """View a contiguous ``(B, H, rows, keys+rows-1)`` block so that ``[i, j] = relative[i, j - i + rows - 1]``.

    A zero-copy skew: stepping one row down moves ``width - 1`` elements, one column left of the
    next row's start. Columns with ``j > i + start`` read the next row's values; they are masked.
    """
    width = relative.shape[-1]
    s0, s1 = relative.stride(0), relative.stride(1)
    return relative.as_strided(
        (relative.shape[0], relative.shape[1], rows, keys),
        (s0, s1, width - 1, 1),
        relative.storage_offset() + rows - 1,
    )


def _unskewed(grad: Tensor, rows: int, keys: int) -> Tensor:
    """Adjoint of :func:`_skewed`: ``[i, m] = grad[i, m + i - (rows - 1)]``, zero outside ``0 .. keys-1``."""
    padded = F.pad(grad, (rows - 1, rows - 1)).contiguous()
    width_padded = padded.shape[-1]
    s0, s1 = padded.stride(0), padded.stride(1)
    return padded.as_strided(
        (padded.shape[0], padded.shape[1], rows, keys + rows - 1),
        (s0, s1, width_padded + 1, 1),
        padded.storage_offset(),
    )


def _block_logits(q_block, k, table_block, start, rows, keys, causal, scale):
    logits = q_block @ k[:, :, :keys].transpose(-1, -2)
    relative = (q_block @ table_block.transpose(-1, -2)).contiguous()
    logits += _skewed(relative, rows, keys)
    logits *= scale
    if causal:
        future = torch.ones(rows, keys, dtype=torch.bool, device=q_block.device).triu_(start + 1)
        logits.masked_fill_(future, float("-inf"))
    return logits


class _ChunkedRelativeAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, table, causal, scale, block_size):
        B, H, L, _ = q.shape
        out = _new_buffer(*q.shape[:3], v.shape[-1], dtype=q.dtype, device=q.device)
        lse = _new_buffer(
            B, H, L, dtype=torch.float32 if q.dtype != torch.float64 else q.dtype, device=q.device
        )
        for start in range(0, L, block_size):
            rows = min(block_size, L - start)
            keys = _block_keys(start, rows, L, causal)
            logits = _block_logits(
                q[:, :, start : start + rows],
                k,
                _block_table(table, start, rows, keys, L),
                start,
                rows,
                keys,
                causal,
                scale,
            )
            block_lse = torch.logsumexp(logits, dim=-1, keepdim=True)
            logits.sub_(block_lse).exp_()
            out[:, :, start : start + rows] = logits @ v[:, :, :keys]
            lse[:, :, start : start + rows] = block_lse.squeeze(-1)
        ctx.save_for_backward(q, k, v, table, out, lse)
        ctx.causal, ctx.scale, ctx.block_size = causal, scale, block_size
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, table, out, lse = ctx.saved_tensors
        causal, scale, block_size = ctx.causal, ctx.scale, ctx.block_size
        L = q.shape[2]
        grad_out = grad_out.contiguous()
        grad_q, grad_k, grad_v = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        grad_table = torch.zeros_like(table)
        # softmax backward: dS = P * (dP - rowsum(dO * O)).
        delta = (grad_out * out).sum(-1, keepdim=True)
        for start in range(0, L, block_size):
            rows = min(block_size, L - start)
            keys = _block_keys(start, rows, L, causal)
            rows_slice = slice(start, start + rows)
            q_block = q[:, :, rows_slice]
            table_block = _block_table(table, start, rows, keys, L)
            probs = _block_logits(q_block, k, table_block, start, rows, keys, causal, scale)
            probs.sub_(lse[:, :, rows_slice].unsqueeze(-1).to(probs.dtype)).exp_()
            grad_block = grad_out[:, :, rows_slice]
            grad_v[:, :, :keys] += probs.transpose(-1, -2) @ grad_block
            grad_logits = grad_block @ v[:, :, :keys].transpose(-1, -2)
            grad_logits.sub_(delta[:, :, rows_slice]).mul_(probs).mul_(scale)
            grad_k[:, :, :keys] += grad_logits.transpose(-1, -2) @ q_block
            grad_relative = _unskewed(grad_logits, rows, keys)
            grad_q[:, :, rows_slice] = grad_logits @ k[:, :, :keys] + grad_relative @ table_block
            first = L - start - rows
            target = grad_table[..., first : first + keys + rows - 1, :]
            if table.dim() == 2:
                target += torch.einsum("bhcw,bhcd->wd", grad_relative, q_block)
            else:
                target += torch.einsum("bhcw,bhcd->hwd", grad_relative, q_block)
        return grad_q, grad_k, grad_v, grad_table, None, None, None


def relative_attention_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    rel_emb: Tensor,
    *,
    causal: bool = True,
    scale: float | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Tensor:
    """Memory-efficient relative attention: the skewing trick on query blocks, recomputed in backward.

    Sequences of at most ``block_size`` tokens are one block; they take :func:`relative_attention_skew`,
    whose autograd keeps the ``(L, L)`` probabilities (no more than one block's workspace) and skips
    the recomputation, about twice as fast to train at short lengths.
    """
    check_relative_inputs(q, k, v, rel_emb, causal)
    if block_size < 1:
        raise ValueError(f"relative_attention: block_size must be >= 1; got {block_size}")
    if q.shape[2] <= block_size:
        return relative_attention_skew(q, k, v, rel_emb, causal=causal, scale=scale)
    L, D = q.shape[2], q.shape[3]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    table = offset_table(rel_emb, L, causal)
    return _ChunkedRelativeAttention.apply(q, k, v, table, causal, scale, block_size)
