"""`--log-samples DIR`: every request of a suite run as the model saw it (lm-eval's logged samples), as JSONL.

One file per model and task, DIR/<model>/<task>.jsonl: the prompt exactly as sent (after the chat template,
when it applies), the model's raw and filtered answers, the target and the metrics of each document.
"""

import json
from pathlib import Path


def sample_rows(samples: list[dict]) -> list[dict]:
    rows = []
    for s in samples:
        arguments = s.get("arguments") or []
        rows.append({"doc_id": s.get("doc_id"), "prompt": arguments[0][0] if arguments else None,
                     "arguments": arguments, "target": s.get("target"), "resps": s.get("resps"),
                     "filtered_resps": s.get("filtered_resps"),
                     **{m: s.get(m) for m in s.get("metrics") or []}})
    return rows


def write_samples(folder: Path, who: str, task: str, samples: list[dict]) -> Path:
    path = Path(folder) / who / f"{task}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in sample_rows(samples):
            handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return path
