"""The records both decoders take (cpu/decode.py on NumPy arrays, cuda/decode.py on device arrays):
the weights laid out for generation, and the per-row scratch. Each backend's `decoder_weights` fills
Weights from its own arrays; run/sample.py makes the Rows."""

from collections import namedtuple

# table0 (V, G) or (0, G): E W_ih0^T + b_ih0, so that layer 0's projection is a row copy;
# emb (V, E); W_ih0T (E, G); W_ihT (L-1, H, G); W_hhT (L, H, G); b_ih, b_hh (L, G); W_outT (H, V); b_out (V,);
# and W_ih0, W_ih, W_hh, W_out: the same weights as PyTorch lays them out, (G, E) ... (V, H), rows
# padded (gemm.padded) for the CPU's dot-product kernels (empty on the GPU, whose decoder reads only
# the transposes). With narrow weights (kernels/formats.py: bf16, int8) W_ih, W_hh and W_out are in
# that format (uint16, int8; their transposes empty), and s_ih (L-1, G), s_hh (L, G), s_out (V,) are
# int8's per-row scales (empty, with no rows' worth of columns, for f32 and bf16)
Weights = namedtuple(
    "Weights", "table0 emb W_ih0T W_ihT W_hhT b_ih b_hh W_outT b_out W_ih0 W_ih W_hh W_out s_ih s_hh s_out"
)
# per-row scratch: toks (B,) int64; x (B, E); gx, gh (B, G); act (B, A); hn (B, H), cn (B, C) the new
# state; logits, probs (B, V); recent (B, R) int64 ring of the last tokens (R = 0: no penalty);
# counts (B, V) int32 how often each token is in the ring (0 columns when R = 0); seen (B,) how
# many tokens went in
Rows = namedtuple("Rows", "toks x gx gh act hn cn logits probs recent counts seen")
