"""A report's evaluations: report.json keeps `eval` (the latest) and `evals` (every one, by label)."""


def eval_label(ev: dict) -> str:
    """'torch', 'vllm', or 'torch+snapkv@0.5' when a KV press was applied."""
    press = ev.get("settings", {}).get("kv_press") or {}
    name = press.get("press") if isinstance(press, dict) else None
    if not name or name == "none":
        return ev["runtime"]
    if press.get("window"):  # StreamingLLM's fixed cache: sinks + window
        sinks = press.get("n_sink") if press.get("n_sink") is not None else 4
        return f"{ev['runtime']}+{name}@{sinks}+{press['window']}"
    return f"{ev['runtime']}+{name}@{press.get('ratio', '')}"


def evaluations(report: dict) -> dict[str, dict]:
    """label -> evaluation; reports written before `evals` existed hold only `eval`."""
    evals = dict(report.get("evals") or {})
    if report.get("eval") and eval_label(report["eval"]) not in evals:
        evals[eval_label(report["eval"])] = report["eval"]
    return evals


def add_evaluation(report: dict, ev: dict) -> dict:
    """`report` with `ev` as its latest evaluation, kept beside the others under its label."""
    report = dict(report)
    report["evals"] = {**evaluations(report), eval_label(ev): ev}
    report["eval"] = ev
    return report
