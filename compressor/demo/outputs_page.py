"""Page: the outputs side by side (a table by Score, Perf or ms/token; Perf against time with the source and
the Score iso-lines), then one output's report page and its `check` verdicts."""

import streamlit as st

from compressor.demo import outputs_view as view
from compressor.demo.errors import shown_in_page
from compressor.demo.folders import given_folders
from compressor.reports.report import short_names

NUMBER_FORMATS = {"size MB": "%.1f", "Perf": "%.3f", "ms/token": "%.2f", "PerfNorm": "%.3f", "SpeedNorm": "%.3f",
                  "Score": "%.3f"}


def chosen_folders() -> list:
    typed = st.text_input("More folders: outputs of `compressor apply` or sweeps (separated by spaces)",
                          key="outputs_more")
    return given_folders() + view.extra_folders(typed)


def show_table(rows: list[dict]) -> list[dict]:
    by = st.selectbox("Sort by", list(view.SORT_KEYS), key="outputs_sort")
    rows = view.sort_rows(rows, by)
    st.dataframe(view.table_records(rows), hide_index=True, key="outputs_table",
                 column_config={title: st.column_config.NumberColumn(format=fmt)
                                for title, fmt in NUMBER_FORMATS.items()})
    return rows


def show_chart(rows: list[dict]) -> None:
    labels = view.eval_labels(rows)
    if not labels:
        st.info("No output has a Score yet (an evaluation with a baseline): nothing to plot.")
        return
    label = st.selectbox("Evaluation plotted", labels, key="outputs_eval")
    chart, note = view.frontier_chart(rows, label)
    if note:
        st.caption(note)
    if chart is not None:
        st.altair_chart(chart, width="stretch")


def show_image(path) -> None:
    try:
        st.image(str(path), caption=path.name)
    except (OSError, ValueError) as error:  # a truncated or foreign file: the rest of the report still shows
        st.warning(f"{path}: not a readable image ({type(error).__name__})")


def show_report(rows: list[dict]) -> None:
    folders = view.report_folders(rows)
    if not folders:
        return
    names = short_names(folders)
    folder = st.selectbox("Report of", folders, format_func=names.get, key="outputs_report")
    report = view.report_page(folder)
    for problem in report["problems"]:
        st.warning(problem)
    if report["markdown"]:
        st.markdown(report["markdown"])
    elif report["stages"]:
        st.dataframe(report["stages"], hide_index=True)
    for image in report["images"]:
        show_image(image)
    if report["recipe"]:
        st.subheader("Recipe")
        st.code(report["recipe"], language="yaml")
    st.subheader("Runtime checks")
    if report["checks"]:
        st.dataframe(report["checks"], hide_index=True, key="outputs_checks")
    else:
        st.caption(f"Not checked yet: `compressor check {folder} --runtime transformers` (or vllm, onnxruntime).")


def page() -> None:
    st.title("Outputs")
    folders = chosen_folders()
    if not folders:
        st.info("No output under ./out yet: make one with `compressor apply recipes/fp16.yaml`, then reload "
                "(or type a folder above).")
        return
    rows, problems = view.output_table(folders)
    for problem in problems:
        st.warning(problem)
    if not rows:
        return
    rows = show_table(rows)
    show_chart(rows)
    st.divider()
    show_report(rows)


with shown_in_page():
    page()
