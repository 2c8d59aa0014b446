"""The lake on a local directory and on the S3 endpoint over HTTP (moto server)."""

from __future__ import annotations

import hashlib
import os

import pytest

from cxr.errors import ConfigError, CxrError
from cxr.stores.lake import ObjectNotFound, check_key, open_lake


@pytest.mark.integration
def test_put_get_exists_list_delete(lake):
    assert list(lake.list()) == []
    assert not lake.exists("images/ab/x.png")
    lake.put("images/ab/x.png", b"\x89PNG-1", content_type="image/png")
    lake.put("images/cd/y.png", b"two")
    lake.put("runs/dag/2024-01-01/t.ipynb", b"{}")
    assert lake.get("images/ab/x.png") == b"\x89PNG-1"
    assert lake.exists("images/ab/x.png")
    assert lake.info("images/cd/y.png").size == 3
    assert [o.key for o in lake.list("images/")] == ["images/ab/x.png", "images/cd/y.png"]
    assert sorted(o.key for o in lake.list()) == ["images/ab/x.png", "images/cd/y.png", "runs/dag/2024-01-01/t.ipynb"]
    lake.put("images/ab/x.png", b"replaced")  # overwrite is whole-object
    assert lake.get("images/ab/x.png") == b"replaced"
    lake.delete("images/ab/x.png")
    assert not lake.exists("images/ab/x.png")
    with pytest.raises(ObjectNotFound):
        lake.get("images/ab/x.png")
    lake.delete("images/ab/x.png")  # deleting a missing key is not an error
    assert lake.uri("images/cd/y.png").endswith("images/cd/y.png")


@pytest.mark.integration
@pytest.mark.parametrize("key", ["../escape", "images/../../etc/passwd", "/abs/key", "a//b", "a/./b", "a\\b", ""])
def test_key_traversal_rejected(lake, key):
    with pytest.raises(CxrError):
        lake.put(key, b"x")
    with pytest.raises(CxrError):
        lake.get(key)
    assert list(lake.list()) == []


@pytest.mark.unit
def test_check_key_accepts_normal_keys():
    assert check_key("backup/run=1/part-0.parquet") == "backup/run=1/part-0.parquet"


@pytest.mark.integration
def test_put_file_large_is_multipart_on_s3(s3_lake, tmp_path):
    data = os.urandom(9 * 1024 * 1024)  # above boto3's 8 MB multipart threshold
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    s3_lake.put_file("exports/big.bin", src)
    head = s3_lake.client.head_object(Bucket=s3_lake.bucket, Key="exports/big.bin")
    assert head["ETag"].strip('"').endswith("-2")  # completed as a two-part multipart upload
    out = tmp_path / "back.bin"
    s3_lake.download("exports/big.bin", out)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()


@pytest.mark.integration
def test_put_file_and_download_local(local_lake, tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(b"abc" * 1000)
    local_lake.put_file("exports/f.bin", src)
    out = tmp_path / "g.bin"
    local_lake.download("exports/f.bin", out)
    assert out.read_bytes() == src.read_bytes()
    assert not [p for p in local_lake.root.rglob(".tmp-*")]


@pytest.mark.integration
def test_s3_missing_bucket_is_a_config_error(services):
    with pytest.raises(ConfigError) as err:
        open_lake("s3://cxr-no-such-bucket", endpoint_url=services["CXR_S3_ENDPOINT_URL"])
    assert err.value.setting == "CXR_LAKE_URL"


@pytest.mark.integration
def test_lake_from_settings_with_prefix(services, make_settings):
    from cxr.stores.lake import lake_from_settings

    lake = lake_from_settings(make_settings(lake_url=services["CXR_LAKE_URL"] + "/t-prefix",
                                            s3_endpoint_url=services["CXR_S3_ENDPOINT_URL"]))
    key = f"images/{os.urandom(4).hex()}.png"
    lake.put(key, b"p")
    try:
        assert lake.uri(key) == f"{services['CXR_LAKE_URL']}/t-prefix/{key}"
        assert [o.key for o in lake.list("images/") if o.key == key] == [key]
    finally:
        lake.delete(key)
