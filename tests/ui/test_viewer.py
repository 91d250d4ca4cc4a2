"""The viewer in a real headless Chromium against a live ``rps serve`` with auth on.

Each test collects every request the page makes and asserts that none leaves 127.0.0.1;
the numbers shown are compared with the JSON API's answers for the same query; each page
is saved as a PNG screenshot in ``test-output/ui/``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import expect

from tests.ui.conftest import ALICE_KEY, BOB_KEY, register_records, text_record

pytestmark = pytest.mark.slow

SHOWN_DIGITS = 4  # the page rounds numbers to 4 significant digits (exact value in data-value)
WAIT_MS = 60_000


@pytest.fixture
def page(browser, viewer) -> Iterator[Any]:
    """A fresh tab (its own sessionStorage) whose every request URL is recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    tab.requested = []
    tab.on("request", lambda request: tab.requested.append(request.url))
    try:
        yield tab
    finally:
        context.close()
    outside = [
        url
        for url in tab.requested
        if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).hostname != "127.0.0.1"
    ]
    assert outside == [], f"requests left 127.0.0.1: {outside}"


def enter_key(page, key: str = ALICE_KEY) -> None:
    page.wait_for_selector("#key-form:not([hidden])")
    page.fill("#key-input", key)
    page.click("#key-form button[type=submit]")


def wait_loaded(page) -> None:
    # selectors, not wait_for_function: the pages' Content-Security-Policy forbids eval
    page.wait_for_selector("body[data-state='ready']", state="attached")


def shown_number(locator) -> tuple[float, float]:
    """(the exact value in data-value, the number shown) of a ``.number`` span."""
    return float(locator.get_attribute("data-value")), float(locator.inner_text())


def assert_shown(locator, expected: float) -> None:
    exact, shown = shown_number(locator)
    assert exact == expected
    assert math.isclose(shown, expected, rel_tol=10 ** (1 - SHOWN_DIGITS), abs_tol=1e-300)


def api_get(viewer, path: str, key: str = ALICE_KEY, **params) -> Any:
    response = httpx.get(
        f"{viewer.base_url}{path}", params=params, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_page_shells_need_no_key_but_data_does(viewer):
    for path in (
        "/ui",
        f"/ui/models/{viewer.digits_id}",
        f"/ui/models/{viewer.digits_id}/explain?test_id=x",
        f"/ui/models/{viewer.digits_id}/suspicious",
    ):
        shell = httpx.get(viewer.base_url + path)
        assert shell.status_code == 200 and shell.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in shell.headers["content-security-policy"]
        assert re.findall(r'(?:src|href)="(https?:)?//', shell.text) == []
    assert httpx.get(viewer.base_url + "/models").status_code == 401
    missing = httpx.get(viewer.base_url + "/ui/static/nothing.js")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


def test_click_through_model_point_explanation_suspicious(page, viewer, output_dir):
    page.goto(f"{viewer.base_url}/ui")
    enter_key(page)
    wait_loaded(page)

    # models: alice's only, with their status; the failure shows its problem detail
    rows = page.locator("#models tbody tr")
    shown_ids = {rows.nth(i).get_attribute("data-model-id") for i in range(rows.count())}
    alice_ids = {model["id"] for model in api_get(viewer, "/models")["items"]}
    assert shown_ids == alice_ids and viewer.bob_id not in shown_ids
    failed = page.locator(f'#models tr[data-model-id="{viewer.failed_id}"]')
    assert failed.get_attribute("data-status") == "failed"
    problem = api_get(viewer, f"/models/{viewer.failed_id}")["error"]
    assert problem["detail"] in failed.inner_text()
    page.screenshot(path=output_dir / "models.png", full_page=True)

    # a model: diagnostics, methods, classes, test points equal to the API's
    page.click(f'#models tr[data-model-id="{viewer.digits_id}"] a')
    page.wait_for_url(f"**/ui/models/{viewer.digits_id}")
    wait_loaded(page)
    model = api_get(viewer, f"/models/{viewer.digits_id}")
    assert page.inner_text("#methods") == ", ".join(model["methods"])
    assert page.locator("#classes li").count() == model["num_classes"]
    for name, value in model["diagnostics"].items():
        assert_shown(page.locator(f'#diagnostics .number[data-name="{name}"]'), value)
    points = api_get(viewer, f"/models/{viewer.digits_id}/test-points", limit=24)
    cards = page.locator("#test-points .card")
    assert cards.count() == len(points["items"])
    for index, point in enumerate(points["items"]):
        card = cards.nth(index)
        assert card.get_attribute("data-test-id") == point["test_id"]
        assert card.locator("img.thumb").get_attribute("src") == point["record"]
        assert card.locator(".label").inner_text().endswith(f"({point['label']})")
        assert card.locator(".predicted").inner_text().endswith(f"({point['predicted_class']})")
    page.screenshot(path=output_dir / "model.png", full_page=True)

    page.select_option("#filter-correct", "false")
    wrong = api_get(viewer, f"/models/{viewer.digits_id}/test-points", limit=24, correct="false")
    expect(cards).to_have_count(len(wrong["items"]))
    wait_loaded(page)
    shown = [cards.nth(i).get_attribute("data-test-id") for i in range(cards.count())]
    assert shown == [point["test_id"] for point in wrong["items"]]
    page.select_option("#filter-correct", "")
    wait_loaded(page)

    # an explanation: the first test point
    first = points["items"][0]
    page.click(f'#test-points .card[data-test-id="{first["test_id"]}"]')
    page.wait_for_url("**/explain?*")
    wait_loaded(page)
    check_explanation(page, viewer, first["test_id"], method="lje")
    page.screenshot(path=output_dir / "explanation.png", full_page=True)

    # an image is enlarged on click
    page.locator("#supporters img.thumb").first.click()
    assert page.locator("#overlay").is_visible()
    page.screenshot(path=output_dir / "explanation-enlarged.png")
    page.click("#overlay")

    # the method switch
    page.select_option("#switch-method", "l2")
    page.wait_for_selector("body[data-loaded='l2/predicted/5']", state="attached")
    wait_loaded(page)
    check_explanation(page, viewer, first["test_id"], method="l2")
    page.screenshot(path=output_dir / "explanation-l2.png", full_page=True)

    # the target-class and k switches (Enter in the k field applies it)
    page.select_option("#switch-target", "label")
    page.wait_for_selector("body[data-loaded='l2/label/5']", state="attached")
    wait_loaded(page)
    page.fill("#switch-k", "3")
    page.press("#switch-k", "Enter")
    page.wait_for_selector("body[data-loaded='l2/label/3']", state="attached")
    wait_loaded(page)
    assert "target=label" in page.url and "k=3" in page.url
    check_explanation(page, viewer, first["test_id"], method="l2", target="label", k=3)

    # suspicious labels, export and a review action
    page.click("#nav-suspicious")
    page.wait_for_url("**/suspicious")
    wait_loaded(page)
    ranking = api_get(viewer, "/debug/suspicious", model_id=viewer.digits_id, limit=24)
    cards = page.locator("#suspicious .card")
    assert cards.count() == len(ranking["items"])
    for index, item in enumerate(ranking["items"]):
        card = cards.nth(index)
        assert card.get_attribute("data-train-id") == item["train_id"]
        assert_shown(card.locator('.number[data-name="score"]'), item["score"])
        if item.get("suggested_label") is not None:
            assert card.locator(".suggested").inner_text().endswith(f"({item['suggested_label']})")
    with page.expect_download() as download:
        page.click("#export-json")
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported == ranking
    reviews = "/models/{model_id}/reviews/{train_id}" in api_get(viewer, "/openapi.json")["paths"]
    if reviews:
        # relabel the most suspicious point as suggested, keep the second; the API agrees
        top, second = ranking["items"][0], ranking["items"][1]
        suggested = top.get("suggested_label")
        suggested = top["predicted_class"] if suggested is None else suggested
        cards.nth(0).locator(".review-relabel").click()
        page.wait_for_selector(
            f"#suspicious .card[data-train-id='{top['train_id']}'][data-review='relabel']"
        )
        cards.nth(1).locator(".review-keep").click()
        page.wait_for_selector(
            f"#suspicious .card[data-train-id='{second['train_id']}'][data-review='keep']"
        )
        stored = {
            item["train_id"]: item
            for item in api_get(viewer, f"/models/{viewer.digits_id}/reviews")["items"]
        }
        assert stored[top["train_id"]]["decision"] == "relabel"
        assert stored[top["train_id"]]["new_label"] == suggested
        assert stored[second["train_id"]]["decision"] == "keep"
        # a reload shows the stored reviews
        page.reload()
        wait_loaded(page)
        page.wait_for_selector(
            f"#suspicious .card[data-train-id='{top['train_id']}'][data-review='relabel']"
        )
    else:
        assert page.locator(".review button").count() == 0
        assert "PUT" in page.inner_text("#review-note")
    page.screenshot(path=output_dir / "suspicious.png", full_page=True)


def check_explanation(
    page, viewer, test_id: str, *, method: str, target: str = "predicted", k: int = 5
) -> None:
    """Every number on the explanation page equals ``GET /explain``'s for the same query."""
    body = api_get(
        viewer,
        "/explain",
        model_id=viewer.digits_id,
        test_id=test_id,
        method=method,
        target=target,
        k=k,
    )
    assert int(page.get_attribute("#target-class", "data-value")) == body["target_class"]
    for name, value in body["decomposition"].items():
        assert_shown(page.locator(f"#decomposition-{name} .number"), value)
    prediction = body["prediction"]
    assert (
        int(page.get_attribute("#predicted-class", "data-value")) == prediction["predicted_class"]
    )
    for index, probability in enumerate(prediction["probabilities"]):
        assert_shown(
            page.locator(f'#probabilities .number[data-name="probability-{index}"]'), probability
        )
    for side, container in (("positive", "#supporters"), ("negative", "#opposers")):
        cards = page.locator(f"{container} .card")
        assert cards.count() == len(body[side])
        for index, point in enumerate(body[side]):
            card = cards.nth(index)
            assert card.get_attribute("data-train-id") == point["train_id"]
            assert card.locator("img.thumb").get_attribute("src") == point["record"]
            assert_shown(card.locator('.number[data-name="contribution"]'), point["contribution"])
    bars = page.locator("#chart rect.bar")
    assert bars.count() == len(body["positive"]) + len(body["negative"])
    charted = sorted(float(bars.nth(i).get_attribute("data-value")) for i in range(bars.count()))
    assert charted == sorted(p["contribution"] for p in body["positive"] + body["negative"])


def differs(value: Any, reference: Any) -> bool:
    """The page's rule: numbers more than 10% apart (of the larger), other values unequal."""
    if isinstance(value, (int, float)) and isinstance(reference, (int, float)):
        return abs(value - reference) > 0.1 * max(abs(value), abs(reference))
    return value != reference


def test_tabular_and_text_records_mark_what_differs_or_is_shared(page, viewer, output_dir):
    page.goto(f"{viewer.base_url}/ui")
    enter_key(page)
    wait_loaded(page)
    for model_id, name in ((viewer.tabular_id, "tabular"), (viewer.text_id, "text")):
        point = api_get(viewer, f"/models/{model_id}/test-points", limit=1)["items"][0]
        page.goto(f"{viewer.base_url}/ui/models/{model_id}/explain?test_id={point['test_id']}&k=8")
        wait_loaded(page)
        body = api_get(viewer, "/explain", model_id=model_id, test_id=point["test_id"], k=8)
        cards = page.locator("#supporters .card")
        for index, train_point in enumerate(body["positive"]):
            card = cards.nth(index)
            if name == "tabular":
                differing = {
                    field
                    for field, value in train_point["record"].items()
                    if differs(value, point["record"][field])
                }
                marked = card.locator("tr.differs th")
                assert {marked.nth(i).inner_text() for i in range(marked.count())} == differing
            else:
                test_words = set(point["record"].split())
                marks = card.locator("mark.shared")
                marked = {marks.nth(i).inner_text() for i in range(marks.count())}
                assert marked == test_words & set(train_point["record"].split())
        page.screenshot(path=output_dir / f"explanation-{name}.png", full_page=True)


def test_key_stays_in_the_tab_and_another_tenant_sees_only_its_models(browser, viewer, output_dir):
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(f"{viewer.base_url}/ui")
        enter_key(tab, BOB_KEY)
        wait_loaded(tab)
        rows = tab.locator("#models tbody tr")
        assert [rows.nth(i).get_attribute("data-model-id") for i in range(rows.count())] == [
            viewer.bob_id
        ]
        assert tab.evaluate("sessionStorage.getItem('rps-api-key')") == BOB_KEY
        assert tab.evaluate("localStorage.length") == 0
        # bob cannot open alice's model: the page shows the API's 404 problem
        tab.goto(f"{viewer.base_url}/ui/models/{viewer.digits_id}")
        tab.wait_for_selector("body[data-state='problem']", state="attached")
        assert "no model" in tab.inner_text("#problem")
        # a new tab (new session storage) asks again; a wrong key is refused
        other = context.new_page()
        other.goto(f"{viewer.base_url}/ui")
        enter_key(other, "not-a-key")
        expect(other.locator("#key-message")).to_contain_text("refused")
        assert other.locator("#key-form").is_visible()
        other.screenshot(path=output_dir / "key-prompt.png")
    finally:
        context.close()


def test_models_page_follows_a_new_registration_live(page, viewer, output_dir):
    page.goto(f"{viewer.base_url}/ui")
    enter_key(page)
    wait_loaded(page)
    with viewer.api() as client:
        model_id = register_records(client, "ui-live", 4, text_record)
        try:
            row = page.locator(f'#models tr[data-model-id="{model_id}"]')
            row.wait_for()  # appears without a reload
            page.screenshot(path=output_dir / "models-live.png", full_page=True)
            page.wait_for_selector(f'#models tr[data-model-id="{model_id}"][data-status="ready"]')
            assert client.get_model(model_id)["status"] == "ready"
        finally:
            client.delete_model(model_id)
    page.wait_for_selector(f'#models tr[data-model-id="{model_id}"]', state="detached")
