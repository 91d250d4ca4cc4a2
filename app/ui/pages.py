"""The HTML shells of the viewer's pages and the static files they load.

Each shell names its page and model in ``data-`` attributes of ``<body>``; ``viewer.js``
reads them and renders the data it fetches. The Content-Security-Policy allows this
origin only (images also as ``data:`` URLs), so nothing is ever fetched from elsewhere.
"""

from __future__ import annotations

from html import escape
from importlib import resources

from fastapi import Response
from fastapi.responses import HTMLResponse

from app.core.errors import NotFoundError

__all__ = [
    "models_page",
    "model_page",
    "explanation_page",
    "suspicious_page",
    "page_response",
    "static_response",
]

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
STATIC_TYPES = {
    "viewer.js": "text/javascript; charset=utf-8",
    "viewer.css": "text/css; charset=utf-8",
}


def _shell(*, page: str, title: str, body: str, model_id: str = "") -> str:
    model_link = (
        f' · <a id="nav-model" href="/ui/models/{escape(model_id)}">model</a>'
        f' · <a id="nav-suspicious" href="/ui/models/{escape(model_id)}/suspicious">suspicious labels</a>'
        if model_id
        else ""
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · RPS viewer</title>
<link rel="stylesheet" href="/ui/static/viewer.css">
<script src="/ui/static/viewer.js" defer></script>
</head>
<body data-page="{escape(page)}" data-model-id="{escape(model_id)}">
<header class="bar">
  <nav><a id="nav-models" href="/ui">Models</a>{model_link}</nav>
  <span class="key-state"><span id="key-status"></span>
    <button type="button" id="forget-key" hidden>forget key</button></span>
</header>
<form id="key-form" class="key-form" hidden>
  <p id="key-message">This service needs an API key. It is kept in this tab only.</p>
  <label>API key <input id="key-input" type="password" autocomplete="off" required></label>
  <button type="submit">Use key</button>
</form>
<main>
<h1 id="page-title">{escape(title)}</h1>
<div id="problem" class="problem" role="alert" hidden></div>
{body}
</main>
<div id="overlay" class="overlay" hidden><img id="overlay-image" alt="enlarged record"></div>
</body>
</html>
"""


def models_page() -> str:
    body = """<p class="hint">Models of your tenant. Running precomputes update live.</p>
<table id="models" class="grid">
<thead><tr><th>name</th><th>kind</th><th>status</th><th>classes</th><th>train</th>
<th>test</th><th>methods</th><th>created</th></tr></thead>
<tbody></tbody>
</table>
<p id="models-empty" hidden>No models yet: register one with <code>rps register</code>.</p>"""
    return _shell(page="models", title="Models", body=body)


def model_page(model_id: str) -> str:
    body = """<section id="model-summary" class="summary"></section>
<section>
<h2>Test points</h2>
<form id="test-filters" class="filters">
  <label>label <select id="filter-label"><option value="">any</option></select></label>
  <label>prediction <select id="filter-correct">
    <option value="">any</option><option value="true">correct</option>
    <option value="false">wrong</option></select></label>
</form>
<p class="pager"><button type="button" id="prev-page">previous</button>
<span id="page-info"></span> <button type="button" id="next-page">next</button></p>
<div id="test-points" class="cards"></div>
</section>"""
    return _shell(page="model", title="Model", body=body, model_id=model_id)


def explanation_page(model_id: str) -> str:
    body = """<form id="switches" class="filters">
  <label>method <select id="switch-method"></select></label>
  <label>target class <select id="switch-target"></select></label>
  <label>k <input id="switch-k" type="number" min="1" max="50" value="5"></label>
</form>
<section class="split">
  <div id="test-record" class="card wide"></div>
  <div>
    <h2>Prediction</h2><div id="prediction"></div>
    <h2>Decomposition</h2><dl id="decomposition" class="numbers"></dl>
  </div>
</section>
<section><h2>Contributions</h2><div id="chart"></div></section>
<section class="split">
  <div><h2>Supporters</h2><div id="supporters" class="cards"></div></div>
  <div><h2>Opposers</h2><div id="opposers" class="cards"></div></div>
</section>"""
    return _shell(page="explain", title="Explanation", body=body, model_id=model_id)


def suspicious_page(model_id: str) -> str:
    body = """<form id="suspicious-filters" class="filters">
  <label>ranking <select id="filter-method"></select></label>
  <label>label <select id="filter-label"><option value="">any</option></select></label>
  <label><input id="filter-disagree" type="checkbox"> only where the prediction disagrees</label>
  <button type="button" id="export-json">export JSON</button>
  <button type="button" id="export-csv">export CSV</button>
</form>
<p id="review-note" class="hint"></p>
<p class="pager"><button type="button" id="prev-page">previous</button>
<span id="page-info"></span> <button type="button" id="next-page">next</button></p>
<div id="suspicious" class="cards"></div>"""
    return _shell(page="suspicious", title="Suspicious labels", body=body, model_id=model_id)


def page_response(html: str) -> HTMLResponse:
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def static_response(name: str) -> Response:
    media_type = STATIC_TYPES.get(name)
    if media_type is None:
        raise NotFoundError(f"no viewer file named {name!r}")
    content = resources.files("app.ui").joinpath("static", name).read_bytes()
    return Response(
        content,
        media_type=media_type,
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
