"""The paper's GPT-Neo shape where a profile leaves it open: the local-attention window and the
heads of a width. One source for the profile's ``model`` section (``core.profile_sections``) and
``lm.gpt_neo.gpt_neo_config``; plain Python, so the core install (``lm.hf_callback``) stays light."""

PAPER_LOCAL_WINDOW = 256  # GPT-Neo local-attention window used in the paper (model.window_size)


def default_n_head(n_embd: int) -> int:
    """Heads of width ``n_embd`` when ``model.n_head`` is null: 16 as in the paper, fewer for
    tiny widths (head size at least 16)."""
    return max(1, min(16, n_embd // 16))
