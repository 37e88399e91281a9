"""One self-contained HTML report per run: plotly.js inlined once, figures as JSON.

The page shell is `grokscope/templates/report.html` (a `string.Template`); the figures
and the task's summary rows come from the run's task (`TaskSpec.figures`, `.summary`),
the rest of the summary (run, model, optimiser, parameter count) is the same for every
task. The sweep report (`grokscope.sweep_report`) uses the same shell via `render_page`.

Every user-supplied string (run name, preset, op) is HTML-escaped; JSON inside <script>
has `</` escaped so no string can close the tag. A tiny status script records JavaScript
errors and the number of drawn figures in `<body data-js-errors=... data-figures-drawn=...>`,
which the browser test reads.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from string import Template

from plotly.offline import get_plotlyjs

from grokscope.pipeline import Analysis
from grokscope.checkpoints import atomic_write_bytes
from grokscope.config import RunConfig
from grokscope.constants import PLOTLY_JS_FILENAME, REPORT_FILENAME
from grokscope.figures import Figure
from grokscope.tasks.registry import get_task

PAGE_TEMPLATE = "report.html"


def escape_html(value) -> str:
    """`value` as text safe inside HTML elements and quoted attributes."""
    return html.escape(str(value), quote=True)


def figure_json(fig) -> str:
    """A plotly figure as JSON that is safe inside a <script> element."""
    return fig.to_json().replace("</", "<\\/")


def summary_table_html(rows: Sequence[tuple[str, str]]) -> str:
    """(label, value) rows as the report's summary table, every cell escaped."""
    body = "".join(f"<tr><th>{escape_html(k)}</th><td>{escape_html(v)}</td></tr>" for k, v in rows)
    return f'<table class="summary">{body}</table>'


def write_plotly_js(folder: str | Path) -> Path:
    """Write plotly.js once into `folder` (as plotly.min.js) for reports that share it;
    rewritten only if it differs (another plotly version)."""
    path = Path(folder) / PLOTLY_JS_FILENAME
    data = get_plotlyjs().encode("utf-8")
    if not path.is_file() or path.read_bytes() != data:
        atomic_write_bytes(path, data)
    return path


def render_page(title: str, summary_html: str, figures: Sequence[Figure], notes_html: str = "",
                footer_html: str = "", plotly_src: str | None = None) -> str:
    """The HTML page: escaped `title`, trusted `summary_html` / `notes_html` / `footer_html`,
    and one section per figure (heading and caption escaped, the figure drawn by plotly.js).

    plotly.js is inlined (the page works alone, ~5 MB) unless `plotly_src` names a file
    relative to the page (see `write_plotly_js`), which is loaded instead (still offline).
    """
    sections, scripts = [], []
    for i, (heading, caption, fig) in enumerate(figures):
        sections.append(f'<section><h2>{escape_html(heading)}</h2><p class="caption">{escape_html(caption)}</p>'
                        f'<div class="figure" id="fig-{i}"></div></section>')
        scripts.append(f'draw("fig-{i}", {figure_json(fig)});')
    page = Template(files("grokscope").joinpath("templates", PAGE_TEMPLATE).read_text(encoding="utf-8"))
    script = (f'<script type="text/javascript">{get_plotlyjs()}</script>' if plotly_src is None
              else f'<script type="text/javascript" src="{escape_html(plotly_src)}"></script>')
    return page.substitute(
        title=escape_html(title), plotly_script=script, n_figures=len(figures), summary=summary_html,
        notes=f'<p class="caption">{notes_html}</p>' if notes_html else "", sections="".join(sections),
        footer=footer_html, scripts="\n".join(scripts),
    )


def run_summary_rows(a: Analysis) -> list[tuple[str, str]]:
    """The summary rows every run's report has, then the task's own (`TaskSpec.summary`)."""
    cfg: RunConfig = a.run.config
    spec = get_task(cfg.task.task)
    m, tr = cfg.model, cfg.train
    steps = a.table["step"]
    rows = [
        ("run", a.run.name), ("preset", cfg.preset or "none"), ("task", spec.describe(cfg.task)),
        ("model", f"{m.n_layers} layer(s), d_model {m.d_model}, {m.n_heads} head(s) × {m.d_head}, d_mlp {m.d_mlp}, "
                  f"{m.act_fn}, norm {m.normalization}, tied embeddings {m.tied_embeddings}, biases {m.biases}"),
        ("parameters", f"{a.n_params:,}"),
        ("optimiser", f"AdamW lr {tr.lr:g} ({tr.lr_schedule}), weight decay {tr.weight_decay:g}"
                      f"{(' (then step:wd ' + tr.weight_decay_steps + ')') if tr.weight_decay_steps else ''}, "
                      f"betas ({tr.beta1:g}, {tr.beta2:g}), batch {tr.batch_size or 'full'}, {tr.epochs:,} steps"),
        ("checkpoints analysed", f"{len(a.table)} (steps {int(steps.min())}–{int(steps.max()):,})"),
        ("transition", a.transition.describe()),
        *spec.summary(a),
    ]
    if a.skipped:
        rows.append(("skipped (unreadable)", ", ".join(Path(s).name for s in a.skipped)))
    return rows


def render_report(a: Analysis, plotly_src: str | None = None) -> str:
    """The report's HTML text for an `Analysis` of any registered task: the task's figures,
    then those its measures declare (`plotly_src`: see `render_page`)."""
    spec = get_task(a.run.config.task.task)
    figures = list(spec.figures(a)) + [f for m in a.measures for f in m.figures(a)]
    return render_page(f"grokscope report: {a.run.name}", summary_table_html(run_summary_rows(a)), figures,
                       notes_html=spec.report_notes_html, plotly_src=plotly_src)


def write_report(a: Analysis, path: str | Path | None = None, plotly_js: str = "inline") -> Path:
    """Render the report of an Analysis to RUN_DIR/report.html (or `path`), atomically.

    `plotly_js`: "inline" (one self-contained file), "shared" (plotly.min.js written
    beside the report and loaded from there), or a path, relative to the report, of a
    plotly.min.js the caller provides (e.g. "../plotly.min.js" for the runs of a sweep).
    """
    path = Path(path) if path is not None else Path(a.run.path) / REPORT_FILENAME
    src = None
    if plotly_js == "shared":
        src = write_plotly_js(path.parent).name
    elif plotly_js != "inline":
        src = plotly_js
    atomic_write_bytes(path, render_report(a, plotly_src=src).encode("utf-8"))
    return path
