"""Reviews: the pure rules, the dashboard's review panel driven from Python, and `cxr review import`."""

from __future__ import annotations

import shutil

import pytest
from ingest_factory import FakePredictor, gradient, png_bytes
from people_factory import OPERATOR, sign_in, user
from sqlalchemy import func, select

from cxr.app.dashboard import Dashboard
from cxr.auth import audit
from cxr.errors import InputError
from cxr.model.classes import SEED_CLASSES
from cxr.review import rules
from cxr.review.importer import import_vindr
from cxr.review.store import open_case, reviews_of
from cxr.stores.catalog import Stores
from cxr.stores.schema import review, review_box

P = [rules.PredictedBox(1, 0, SEED_CLASSES[0], 0.9, (10, 10, 50, 50)),
     rules.PredictedBox(2, 1, SEED_CLASSES[1], 0.8, (60, 60, 90, 90)),
     rules.PredictedBox(3, 4, SEED_CLASSES[4], 0.7, (5, 70, 25, 95))]


def _screen(*boxes):
    return [{"box": b.box, "class_name": b.class_name, "pred_bbox_id": b.pred_bbox_id} for b in boxes]


def test_decide_accept_reject_correct_add_and_refusals():
    edited = _screen(P[0], P[1]) + [{"box": (5, 70, 30, 99), "class_name": P[2].class_name, "pred_bbox_id": 3},
                                    {"box": (1, 1, 4, 4), "class_name": "ILD"}]
    out = rules.decide(P, edited, {1: "accept", 2: "reject"}, SEED_CLASSES, 100, 100)
    assert [(d.action, d.pred_bbox_id) for d in out] == [("accept", 1), ("reject", 2), ("correct", 3), ("add", None)]
    assert out[0].box == P[0].box and out[2].box == (5, 70, 30, 99) and out[3].class_name == "ILD"
    assert rules.verdict_of(out) == "findings" and len(rules.final_labels(out)) == 3
    deleted = rules.decide(P, _screen(P[0], P[2]), {1: "accept", 3: "accept"}, SEED_CLASSES, 100, 100)
    assert deleted[1].action == "reject"
    with pytest.raises(InputError, match="neither accepted"):
        rules.decide(P, _screen(*P), {1: "accept"}, SEED_CLASSES, 100, 100)
    with pytest.raises(InputError, match="outside"):
        rules.decide(P, [{"box": (90, 90, 120, 99), "class_name": "ILD"}], {}, SEED_CLASSES, 100, 100)
    with pytest.raises(InputError, match="unknown class"):
        rules.decide(P, [{"box": (1, 1, 9, 9), "class_name": "Unicorn"}], {}, SEED_CLASSES, 100, 100)
    assert rules.verdict_of(rules.no_finding(P)) == "no_finding"


@pytest.fixture
def radiologist_dash(make_settings, sqlite_engine, local_lake):
    session = sign_in(sqlite_engine, "radiologist", "rita")
    return Dashboard(make_settings(), predictor=FakePredictor(), engine=sqlite_engine, lake=local_lake, session=session)


def test_radiologist_reviews_an_upload_and_the_rows_say_exactly_that(radiologist_dash):
    d = radiologist_dash
    assert d.review is not None and d.handle_upload("chest.png", png_bytes(gradient(200, 160)))
    tid = d.last_saved.transaction_id
    assert d.open_review(tid)
    panel = d.review
    first, second = panel.case.boxes
    screen = [dict(b) for b in panel.boxes.bboxes]
    screen[1]["width"] += 10 * panel.scale  # resize the second box by 10 image pixels
    screen.append({"x": 2, "y": 2, "width": 20, "height": 20, "label": "ILD"})  # a box the model missed
    panel.boxes.bboxes = screen
    panel.choices[first.pred_bbox_id].value = "accept"
    rid = panel.submit()
    assert rid is not None and 'data-accept="1"' in panel.status.value
    (rv,) = reviews_of(d.engine, tid)
    assert rv["reviewer_role"] == "radiologist" and rv["verdict"] == "findings" and rv["source"] == "dashboard"
    acts = {(b["action"], b["pred_bbox_id"]) for b in rv["boxes"]}
    assert acts == {("accept", first.pred_bbox_id), ("correct", second.pred_bbox_id), ("add", None)}
    acc = next(b for b in rv["boxes"] if b["action"] == "accept")
    assert (acc["x_min"], acc["y_min"], acc["x_max"], acc["y_max"]) == pytest.approx(first.box, abs=1e-9)
    cor = next(b for b in rv["boxes"] if b["action"] == "correct")
    assert cor["x_max"] == pytest.approx(second.box[2] + 10, abs=1e-6) and cor["x_min"] == pytest.approx(second.box[0])
    # a second review is a second set of rows; nothing is overwritten
    d.open_review(tid)
    assert d.review.no_finding() is not None
    assert [r["verdict"] for r in reviews_of(d.engine, tid)] == ["findings", "no_finding"]
    actions = [e["action"] for e in audit.events(d.engine)]
    assert actions.count("view_image") == 2 and actions.count("review") == 2 and audit.verify(d.engine).ok


def test_an_uploader_cannot_review_and_the_attempt_is_audited(make_settings, sqlite_engine, local_lake):
    s = sign_in(sqlite_engine, "uploader", "ulf")
    d = Dashboard(make_settings(), predictor=FakePredictor(), engine=sqlite_engine, lake=local_lake, session=s)
    assert d.review is None and d.handle_upload("a.png", png_bytes(gradient()))
    with pytest.raises(InputError, match="only a radiologist"):
        open_case(sqlite_engine, local_lake, d.last_saved.transaction_id, s.principal, client_addr="1.2.3.4")
    (denied,) = audit.events(sqlite_engine, action="view_image")
    assert denied["outcome"] == "denied" and denied["username"] == "ulf"


def test_an_uploader_sees_only_their_own_history(make_settings, sqlite_engine, local_lake):
    other = sign_in(sqlite_engine, "uploader", "olga")
    Dashboard(make_settings(), predictor=FakePredictor(), engine=sqlite_engine, lake=local_lake,
              session=other).handle_upload("olga.png", png_bytes(gradient(90, 90)))
    me = sign_in(sqlite_engine, "uploader", "ulf")
    d = Dashboard(make_settings(), predictor=FakePredictor(), engine=sqlite_engine, lake=local_lake, session=me)
    assert 'data-n="0"' in d.history.value
    d.handle_upload("mine.png", png_bytes(gradient(80, 80)))
    assert 'data-n="1"' in d.history.value and "mine.png" in d.history.value and "olga.png" not in d.history.value
    boss = sign_in(sqlite_engine, "radiologist", "rita")
    r = Dashboard(make_settings(), predictor=FakePredictor(), engine=sqlite_engine, lake=local_lake, session=boss)
    assert 'data-n="2"' in r.history.value


# -- import ---------------------------------------------------------------------------------------
@pytest.fixture
def phantom_set(tmp_path, make_settings, sqlite_engine, local_lake, cli):
    """4 PNG + 2 DICOM phantoms ingested (the fake detector), and their labels.csv."""
    from cxr.ingest.pipeline import ingest_files

    cli("phantoms", "4", tmp_path / "png", "--size", "256", check=True)
    cli("phantoms", "2", tmp_path / "dcm", "--dicom", "--seed", "50", "--size", "256", check=True)
    stores = Stores.open(make_settings(), engine=sqlite_engine, lake=local_lake)
    ingest_files([tmp_path / "png" / "images", tmp_path / "dcm" / "images"], stores=stores, predictor=FakePredictor())
    user(sqlite_engine, "rita", "radiologist")
    return stores, tmp_path


def test_import_matches_by_content_even_under_masked_names(phantom_set, tmp_path):
    stores, root = phantom_set
    masked = tmp_path / "masked"
    masked.mkdir()
    lines = []
    for sub in ("png", "dcm"):
        for i, line in enumerate((root / sub / "labels.csv").read_text().splitlines()[1:]):
            stem = line.split(",")[0]
            src = next((root / sub / "images").glob(stem + ".*"))
            shutil.copy(src, masked / f"anon{sub}{stem[-2:]}{src.suffix}")
            lines.append(f"anon{sub}{stem[-2:]}" + line[len(stem):])
    csv = tmp_path / "masked.csv"
    csv.write_text("image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n" + "\n".join(lines) + "\n")
    report = import_vindr(stores, csv, masked, "rita", SEED_CLASSES, actor=OPERATOR)
    assert report.images == 6 and report.reviews == 6
    with stores.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(review)).scalar_one() == 6
        assert conn.execute(select(func.count()).select_from(review_box)
                            .where(review_box.c.action == "add")).scalar_one() == report.boxes
    assert audit.verify(stores.engine).ok


@pytest.mark.parametrize(("edit", "why"), [
    (lambda line: "nosuch" + line[line.index(","):], "no image file"),
    (lambda line: line.split(",")[0] + ",Unicorn,3,R0,1,1,5,5", "unknown class"),
    (lambda line: line.split(",")[0] + ",ILD,2,R0,200,200,400,400", "outside"),
])
def test_import_refusals_store_nothing(phantom_set, edit, why):
    stores, root = phantom_set
    lines = (root / "png" / "labels.csv").read_text().splitlines()
    lines.append(edit(lines[1]))
    bad = root / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=why):
        import_vindr(stores, bad, root / "png" / "images", "rita", SEED_CLASSES)
    with stores.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(review)).scalar_one() == 0


def test_import_of_an_image_cxr_never_stored_is_refused(phantom_set, cli, tmp_path):
    stores, _ = phantom_set
    cli("phantoms", "1", tmp_path / "new", "--seed", "999", "--size", "256", check=True)
    with pytest.raises(InputError, match="unknown image"):
        import_vindr(stores, tmp_path / "new" / "labels.csv", tmp_path / "new" / "images", "rita", SEED_CLASSES)


def test_cli_import_and_show(phantom_set, cli):
    stores, root = phantom_set
    env = {"CXR_DB_URL": str(stores.engine.url), "CXR_LAKE_URL": stores.lake.url}
    res = cli("review", "import", root / "png" / "labels.csv", "--images", root / "png" / "images",
              "--reviewer", "rita", "--classes", ",".join(SEED_CLASSES), env=env)
    assert res.returncode == 0 and "imported 4 review(s) of 4 image(s)" in res.stdout, res.stderr
    shown = cli("review", "show", "1", env=env)
    assert "import" in shown.stdout and "add" in shown.stdout
    nobody = cli("review", "import", root / "png" / "labels.csv", "--images", root / "png" / "images",
                 "--reviewer", "ghost", "--classes", ",".join(SEED_CLASSES), env=env)
    assert nobody.returncode == 3 and "no such enabled user" in nobody.stderr


def test_an_admin_manages_users_in_the_dashboard_and_others_cannot(make_settings, sqlite_engine, local_lake):
    from cxr.auth.users import get_user

    boss = sign_in(sqlite_engine, "admin", "ada")
    d = Dashboard(make_settings(), predictor=FakePredictor(), engine=sqlite_engine, lake=local_lake, session=boss)
    assert d.admin is not None and d.review is not None  # an admin also reviews
    d.admin.name.value, d.admin.role.value, d.admin.password.value = "newbie", "uploader", "a long password!"
    assert d.admin.add() and d.admin.password.value == ""
    assert get_user(sqlite_engine, "newbie")["role"] == "uploader" and "newbie" in d.admin.table.value
    assert d.admin.set_enabled(False) and not get_user(sqlite_engine, "newbie")["enabled"]
    d.admin.name.value = "ada"
    assert not d.admin.set_enabled(False) and get_user(sqlite_engine, "ada")["enabled"]
    changes = [(e["action"], e["username"]) for e in audit.events(sqlite_engine) if e["action"].startswith("user_")]
    assert changes[-2:] == [("user_add", "ada"), ("user_disable", "ada")]
    rad = sign_in(sqlite_engine, "radiologist", "rita")
    assert Dashboard(make_settings(), predictor=FakePredictor(), engine=sqlite_engine, lake=local_lake,
                     session=rad).admin is None
