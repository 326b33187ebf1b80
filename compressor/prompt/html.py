"""An HTML page showing which words a compression kept (shaded by score) and which it dropped."""

import html

STYLE = (".compressor-kept{white-space:pre-wrap;font-family:inherit;line-height:1.5}"
         ".compressor-kept .d{color:#aaa;text-decoration:line-through}")


def kept_words_html(result) -> str:
    """The original prompt as a <pre>: each kept word highlighted (darker = higher score, class "k", its score in
    the title), each run of dropped words struck out as one span (class "d": a page of 2,000 tokens stays a few
    hundred elements, which the browser draws fast)."""
    kept = set(result.kept_spans)
    finite = [s for s in result.span_scores if s != float("-inf")]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    pieces = [] if result.all_spans else [f'<span class="k">{html.escape(result.text)}</span>']  # no word map (LLMLingua)
    dropped = []  # the current run of dropped words: (text, score)

    def close_run():
        if dropped:
            scores = [score for _, score in dropped]
            pieces.append(f'<span class="d" title="dropped, scores {min(scores):.4g} to {max(scores):.4g}">'
                          f'{"".join(text for text, _ in dropped)}</span>')
            dropped.clear()

    for span, score in zip(result.all_spans, result.span_scores):
        text = html.escape(result.source[span[0]:span[1]])
        if span not in kept:
            dropped.append((text, score))
            continue
        close_run()
        level = 0.0 if score == float("-inf") or high == low else (score - low) / (high - low)
        pieces.append(f'<span class="k" style="background:rgba(255,200,0,{0.15 + 0.6 * level:.2f})" '
                      f'title="score {score:.4g}">{text}</span>')
    close_run()
    return f'<pre class="compressor-kept">{"".join(pieces)}</pre>'


def compression_html(result) -> str:
    stats = (f"{html.escape(result.method)}: kept {result.tokens_out} of {result.tokens_in} tokens "
             f"(budget {result.budget}, ratio {result.ratio:.3f}) in {result.seconds:.2f} s")
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>compressed prompt</title><style>"
            f"body{{font-family:sans-serif;max-width:60em;margin:2em auto}}{STYLE}</style></head><body>"
            f"<p>{stats}. Kept words are highlighted (darker = higher score); dropped words are struck out.</p>"
            f"{kept_words_html(result)}</body></html>\n")
