"""Users and sessions for tests: a user of a role, signed in, with the kernel bound to the session."""

from __future__ import annotations

from sqlalchemy import Engine

from cxr.auth.audit import Actor
from cxr.auth.sessions import Session, bind_kernel, open_session, session_of, token_hash
from cxr.auth.users import add_user, get_user, principal_of

PASSWORD = "correct horse battery"
OPERATOR = Actor("os:test", "operator", "local")


def user(engine: Engine, name: str, role: str, password: str | None = PASSWORD):
    """The user ``name`` (created with ``role`` and ``password`` unless it exists)."""
    row = get_user(engine, name)
    return principal_of(row) if row is not None else add_user(engine, name, role, password, actor=OPERATOR)


def sign_in(engine: Engine, role: str = "uploader", name: str | None = None, *, bind: bool = True,
            client: str = "127.0.0.1") -> Session:
    """A valid session of a ``role`` user; the dashboard kernel is bound to it unless ``bind`` is False."""
    p = user(engine, name or f"{role}1", role)
    token = open_session(engine, p, kind="password", minutes=60, client_addr=client)
    if bind:
        bind_kernel(token_hash(token))
    s = session_of(engine, token_hash(token))
    assert s is not None
    return s


def phantom_boxes(instances_json) -> dict[str, list[tuple]]:
    """``stem -> sorted [(class name, x, y, w, h)]`` of a COCO file that `cxr phantoms` wrote."""
    import json
    from pathlib import Path

    coco = json.loads(Path(instances_json).read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    stems = {im["id"]: Path(im["file_name"]).stem for im in coco["images"]}
    out: dict[str, list[tuple]] = {s: [] for s in stems.values()}
    for a in coco["annotations"]:
        out[stems[a["image_id"]]].append((names[a["category_id"]], *a["bbox"]))
    return {k: sorted(v) for k, v in out.items()}


def exported_boxes(coco: dict, stem_of: dict[int, str], provenance: str = "reviewed") -> dict[str, list[tuple]]:
    """``stem -> sorted [(class name, x, y, w, h)]`` of a mart export's annotations of one provenance."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    image_of = {im["id"]: im["cxr_image_id"] for im in coco["images"]}
    out: dict[str, list[tuple]] = {stem_of[im["cxr_image_id"]]: [] for im in coco["images"]}
    for a in coco["annotations"]:
        if a.get("provenance") == provenance:
            out[stem_of[image_of[a["image_id"]]]].append((names[a["category_id"]], *a["bbox"]))
    return {k: sorted(v) for k, v in out.items()}


def same_boxes(a: dict[str, list[tuple]], b: dict[str, list[tuple]], tol: float = 0.011) -> bool:
    """Equal stems, and per stem the same classes and boxes within ``tol`` pixels."""
    if set(a) != set(b):
        return False
    for k in a:
        if len(a[k]) != len(b[k]):
            return False
        for p, q in zip(a[k], b[k]):
            if p[0] != q[0] or any(abs(x - y) > tol for x, y in zip(p[1:], q[1:])):
                return False
    return True


def stems_by_image(engine, settings, folders) -> dict[int, str]:
    """``image_id -> phantom stem`` for the files in ``folders``: by sha256 (PNG) or the keyed upload hash (DICOM)."""
    import hashlib
    from pathlib import Path

    from sqlalchemy import or_, select

    from cxr.dicom.deid import keyed_hash, load_key
    from cxr.stores.schema import image

    key = load_key(settings)
    out = {}
    with engine.connect() as conn:
        for folder in folders:
            for f in sorted(Path(folder).iterdir()):
                data = f.read_bytes()
                iid = conn.execute(select(image.c.image_id).where(or_(
                    image.c.sha256 == hashlib.sha256(data).hexdigest(),
                    image.c.upload_key == keyed_hash(key, "upload", data)))).scalar_one()
                out[int(iid)] = f.stem
    return out
