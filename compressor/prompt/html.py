"""An HTML page showing which words a compression kept (shaded by score) and which it dropped."""

import html


def compression_html(result) -> str:
    kept = set(result.kept_spans)
    finite = [s for s in result.span_scores if s != float("-inf")]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    pieces = [] if result.all_spans else [f'<span class="k">{html.escape(result.text)}</span>']  # no word map (LLMLingua)
    for span, score in zip(result.all_spans, result.span_scores):
        text = html.escape(result.source[span[0]:span[1]])
        level = 0.0 if score == float("-inf") or high == low else (score - low) / (high - low)
        if span in kept:
            pieces.append(f'<span class="k" style="background:rgba(255,200,0,{0.15 + 0.6 * level:.2f})" '
                          f'title="score {score:.4g}">{text}</span>')
        else:
            pieces.append(f'<span class="d" title="score {score:.4g}">{text}</span>')
    stats = (f"{html.escape(result.method)}: kept {result.tokens_out} of {result.tokens_in} tokens "
             f"(budget {result.budget}, ratio {result.ratio:.3f}) in {result.seconds:.2f} s")
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>compressed prompt</title><style>"
            "body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            "pre{white-space:pre-wrap;font-family:inherit;line-height:1.5}"
            ".d{color:#aaa;text-decoration:line-through}</style></head><body>"
            f"<p>{stats}. Kept words are highlighted (darker = higher score); dropped words are struck out.</p>"
            f"<pre>{''.join(pieces)}</pre></body></html>\n")
