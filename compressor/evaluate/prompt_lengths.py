"""How long a suite's generative prompts are, in a model's tokens, as lm-eval hands them to the model.

Used before any weights load to tell whether a shorter context still holds the suite (the `context` stage).
A prompt is the task's `doc_to_text`, through the chat template (one user turn, generation prompt added)
when the suite runs that task with it; its answer budget is the task's `max_gen_toks` (capped by the run's).
"""

from dataclasses import dataclass

from compressor.evaluate.suite import LM_EVAL_DEFAULT_MAX_GEN_TOKS, Suite, include_folder, task_limit


@dataclass(frozen=True)
class TaskPrompts:
    task: str
    longest_prompt: int   # tokens
    max_gen_toks: int     # the answer budget the task asks for


def generative_prompt_lengths(suite: Suite, tokenizer, chat_template: bool | None = None,
                              max_gen_toks: int | None = None, limit: int | None = None) -> list[TaskPrompts]:
    """The longest prompt and the answer budget of each generative task of `suite` (its items, capped as run)."""
    from lm_eval.tasks import TaskManager

    from compressor.evaluate.lm_eval_runner import offline_and_quiet

    wanted = {t.task: t for t in suite.generative_tasks()}
    if not wanted:
        return []
    found = []
    with offline_and_quiet(), include_folder(suite, max_gen_toks) as folder:
        manager = TaskManager(include_path=str(folder), include_defaults=suite.include_defaults)
        for name, task in manager.load(list(wanted))["tasks"].items():
            entry = wanted[name]
            docs = list(task.eval_docs)[:task_limit(entry, limit) or None]
            texts = [task.doc_to_text(doc) for doc in docs]
            if suite.uses_chat_template(entry, chat_template):
                texts = [tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                                       add_generation_prompt=True) for t in texts]
            longest = max((len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts), default=0)
            budget = (task.config.generation_kwargs or {}).get("max_gen_toks", LM_EVAL_DEFAULT_MAX_GEN_TOKS)
            found.append(TaskPrompts(name, longest, int(budget)))
    return found
