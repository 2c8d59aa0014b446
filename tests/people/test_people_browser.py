"""Sign-in, roles and review in real Chromium (Debian's /usr/bin/chromium, Playwright), with the real model.

- no sign-in gives no page, and no kernel starts;
- a wrong password is refused and audited;
- an uploader signs in, uploads, and sees only their own history;
- a radiologist signs in, accepts one box, rejects one, resizes one (and accepts the rest): the
  DB rows say exactly that.
"""

from __future__ import annotations

import pytest
from dashboard_server import browser_login, dashboard_env, serve
from people_factory import PASSWORD, user

from cxr.auth import audit
from cxr.review.store import predicted_boxes, reviews_of

pytestmark = pytest.mark.e2e

@pytest.fixture
def chrome():
    from dashboard_server import chromium

    with chromium() as browser:
        yield browser


def _page(chrome):
    page = chrome.new_page(viewport={"width": 1400, "height": 1400})
    page.set_default_timeout(120_000)
    return page


def _upload(page, path) -> None:
    with page.expect_file_chooser() as chooser:
        page.click(".widget-upload")
    chooser.value.set_files(str(path))


def test_sign_in_refusals_and_an_uploader_sees_only_their_history(tmp_path, models_dir, db, chrome):
    from cxr.model.phantoms import generate_phantom, write_png

    user(db, "ulf", "uploader")
    user(db, "olga", "uploader")
    mine = write_png(generate_phantom(301, size=384), tmp_path / "in" / "mine.png")
    theirs = write_png(generate_phantom(302, size=384), tmp_path / "in" / "theirs.png")
    with serve(tmp_path, dashboard_env(tmp_path, models_dir)) as (base, log):
        page = _page(chrome)
        page.goto(base)  # no sign-in: the login form, no dashboard, no kernel
        page.wait_for_selector("#username")
        assert "/login" in page.url and page.locator(".widget-upload").count() == 0
        page.goto(base + "voila/static/voila.js")
        assert "403" in page.content() or "Forbidden" in page.content()
        assert "Kernel started" not in log.read_text()

        browser_login(page, base, "ulf", "wrong password")  # refused and audited
        page.wait_for_selector(".cxr-login-error")
        assert "/login" in page.url and "Kernel started" not in log.read_text()
        failed = audit.events(db, action="login")
        assert [(e["username"], e["outcome"]) for e in failed] == [("ulf", "failure")]

        other = _page(chrome)  # another uploader stores an image first
        browser_login(other, base, "olga", PASSWORD)
        other.wait_for_selector(".widget-upload", timeout=240_000)
        _upload(other, theirs)
        other.wait_for_selector(".cxr-saved", timeout=120_000)
        other.close()

        browser_login(page, base, "ulf", PASSWORD)
        page.wait_for_selector(".widget-upload", timeout=240_000)
        assert page.get_attribute(".cxr-user", "data-role") == "uploader"
        assert page.get_attribute(".cxr-history", "data-n") == "0"  # olga's upload is not shown
        _upload(page, mine)
        page.wait_for_selector(".cxr-saved", timeout=120_000)
        page.wait_for_selector(".cxr-history[data-n='1']")
        history = page.inner_text(".cxr-history")
        assert "mine.png" in history and "theirs.png" not in history
        assert page.locator(".cxr-review-open").count() == 0  # an uploader does not review
    uploads = audit.events(db, action="upload")
    assert [e["username"] for e in uploads] == ["olga", "ulf"] and audit.verify(db).ok


def _drag_a_corner(page, predicted: dict, dx: float, dy: float) -> int:
    """Drag the bottom-right corner of a box whose corner is not covered by another box; its pred_bbox_id."""
    groups = page.locator(".cxr-review svg g")
    for i in range(groups.count()):
        g = groups.nth(i)
        handle = g.locator("circle.bottom-right")
        handle.scroll_into_view_if_needed()
        hb = handle.bounding_box()
        x, y = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
        on_top = page.evaluate("([x, y]) => document.elementFromPoint(x, y).classList.contains('bottom-right')", [x, y])
        if not on_top:
            continue
        rect = g.locator("rect.movable")
        rx, ry = float(rect.get_attribute("x")), float(rect.get_attribute("y"))
        pid = min(predicted, key=lambda k: abs(predicted[k].box[0] - rx) + abs(predicted[k].box[1] - ry))
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + dx / 2, y + dy / 2, steps=5)
        page.mouse.move(x + dx, y + dy, steps=5)
        page.mouse.up()
        page.wait_for_timeout(500)  # (the widget redraws the active box last: nth(i) is another box now)
        return pid
    raise AssertionError("every box's corner is covered by another box")


def test_radiologist_accepts_rejects_and_resizes(tmp_path, models_dir, db, chrome):
    from cxr.model.phantoms import generate_phantom, write_png

    user(db, "rita", "radiologist")
    png = write_png(generate_phantom(7, size=512, packed=True), tmp_path / "in" / "packed.png")
    with serve(tmp_path, dashboard_env(tmp_path, models_dir)) as (base, _log):
        page = _page(chrome)
        browser_login(page, base, "rita", PASSWORD)
        page.wait_for_selector(".widget-upload", timeout=240_000)
        _upload(page, png)
        page.wait_for_selector(".cxr-saved", timeout=120_000)
        page.click(".cxr-review-last")
        page.wait_for_selector(".cxr-review-case")
        n = int(page.get_attribute(".cxr-review-case", "data-boxes"))
        tid = int(page.get_attribute(".cxr-review-case", "data-transaction"))
        assert n >= 3
        with db.connect() as conn:
            predicted = {p.pred_bbox_id: p for p in predicted_boxes(conn, tid)}
        resized_id = _drag_a_corner(page, predicted, dx=20, dy=20)
        accepted_id, rejected_id = [pid for pid in sorted(predicted) if pid != resized_id][:2]
        page.locator(f".cxr-review-box-{accepted_id}").get_by_role("button", name="Accept").click()
        page.locator(f".cxr-review-box-{rejected_id}").get_by_role("button", name="Reject").click()
        for pid in sorted(set(predicted) - {resized_id, accepted_id, rejected_id}):
            page.locator(f".cxr-review-box-{pid}").get_by_role("button", name="Accept").click()
        page.click(".cxr-review-save")
        page.wait_for_selector(".cxr-review-saved, .cxr-review .cxr-error", timeout=60_000)
        assert page.locator(".cxr-review .cxr-error").count() == 0, page.inner_text(".cxr-review .cxr-error")
        saved = page.locator(".cxr-review-saved")
        assert (saved.get_attribute("data-accept"), saved.get_attribute("data-reject"),
                saved.get_attribute("data-correct"), saved.get_attribute("data-add")) == (str(n - 2), "1", "1", "0")
    (rv,) = reviews_of(db, tid)
    assert rv["reviewer_role"] == "radiologist" and rv["verdict"] == "findings"
    by_pred = {b["pred_bbox_id"]: b for b in rv["boxes"]}
    assert set(by_pred) == set(predicted) and len(rv["boxes"]) == n
    acc, res = predicted[accepted_id], predicted[resized_id]
    assert by_pred[accepted_id]["action"] == "accept"
    assert tuple(by_pred[accepted_id][k] for k in ("x_min", "y_min", "x_max", "y_max")) == acc.box  # exactly as predicted
    assert by_pred[rejected_id]["action"] == "reject" and by_pred[rejected_id]["x_min"] is None
    resized = by_pred[resized_id]
    assert resized["action"] == "correct" and resized["class_name"] == res.class_name
    assert resized["x_min"] == pytest.approx(res.box[0], abs=1.0) and resized["y_min"] == pytest.approx(res.box[1], abs=1.0)
    assert resized["x_max"] - res.box[2] > 5 and resized["y_max"] - res.box[3] > 5
    others = set(predicted) - {accepted_id, rejected_id, resized_id}
    assert all(by_pred[pid]["action"] == "accept" for pid in others)
    actions = [e["action"] for e in audit.events(db)]
    assert "view_image" in actions and actions[-1] == "review" and audit.verify(db).ok
