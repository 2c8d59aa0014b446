"""The warehouse on SecantusDB over TCP, embedded, and once over TLS with SCRAM-SHA-256 auth."""

from __future__ import annotations

import pytest
from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from cxr.errors import ConfigError
from cxr.stores.warehouse import connect, database_from_settings

from foundation_helpers import assert_one_config_line


@pytest.mark.integration
def test_documents_round_trip_over_tcp(warehouse_db):
    images = warehouse_db["images"]
    images.create_index("image_id", unique=True)
    images.bulk_write([UpdateOne({"image_id": i}, {"$set": {"sha256": f"s{i}"}, "$push": {"transactions": {"t": i}}},
                                 upsert=True) for i in (1, 2, 3)], ordered=False)
    images.update_one({"image_id": 2}, {"$push": {"transactions": {"t": 20}}}, upsert=True)
    assert images.count_documents({}) == 3
    assert [t["t"] for t in images.find_one({"image_id": 2})["transactions"]] == [2, 20]
    with pytest.raises(DuplicateKeyError):
        images.insert_one({"image_id": 1})
    n = list(images.aggregate([{"$unwind": "$transactions"}, {"$count": "n"}]))
    assert n == [{"n": 4}]


@pytest.mark.integration
def test_database_from_settings_tcp(services, make_settings):
    database = database_from_settings(make_settings(warehouse_url=services["CXR_WAREHOUSE_URL"], warehouse_db="cxr_t_fs"))
    try:
        database["c"].insert_one({"a": 1})
        assert database["c"].find_one({}, {"_id": 0}) == {"a": 1}
    finally:
        database.client.drop_database("cxr_t_fs")


@pytest.mark.integration
def test_embedded_default_keeps_data_under_data_dir(make_settings):
    settings = make_settings()
    assert settings.warehouse_url == "embedded"
    database = database_from_settings(settings)
    database["c"].insert_one({"a": 1})
    assert database["c"].count_documents({}) == 1
    assert (settings.data_dir / "warehouse").is_dir() and any((settings.data_dir / "warehouse").iterdir())


@pytest.mark.integration
def test_tls_and_scram(secure_warehouse):
    client = connect(secure_warehouse["url"], tls_ca_file=secure_warehouse["ca"])
    try:
        client["cxr"]["images"].insert_one({"image_id": 1})
        assert client["cxr"]["images"].count_documents({"image_id": 1}) == 1
    finally:
        client.close()
    # the CA can also ride in the URI, as DocumentDB's docs show it
    client = connect(secure_warehouse["url"] + f"&tlsCAFile={secure_warehouse['ca']}&retryWrites=false")
    try:
        assert client["cxr"]["images"].count_documents({}) == 1
    finally:
        client.close()


@pytest.mark.integration
def test_tls_refuses_wrong_password_and_unknown_ca(secure_warehouse):
    bad_pw = secure_warehouse["url"].replace(secure_warehouse["password"], "wrong-password")
    with pytest.raises(ConfigError) as err:
        connect(bad_pw, tls_ca_file=secure_warehouse["ca"])
    assert err.value.setting == "CXR_WAREHOUSE_URL" and "authentication failed" in str(err.value)
    # without the test CA the server certificate does not verify (TLS is checked, never skipped)
    url = secure_warehouse["url"].replace("directConnection=true", "directConnection=true&serverSelectionTimeoutMS=1500")
    with pytest.raises(ConfigError) as err:
        connect(url)
    assert err.value.setting == "CXR_WAREHOUSE_URL"
    assert "certificate" in str(err.value).lower() or "reach" in str(err.value)


@pytest.mark.integration
def test_cli_check_over_tls(secure_warehouse, run_cxr):
    env = {"CXR_WAREHOUSE_URL": secure_warehouse["url"], "CXR_WAREHOUSE_TLS_CA_FILE": str(secure_warehouse["ca"])}
    ok = run_cxr("services", "check", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "warehouse: ok" in ok.stdout
    missing = run_cxr("services", "check", env={**env, "CXR_WAREHOUSE_TLS_CA_FILE": "/nonexistent/ca.pem"})
    assert_one_config_line(missing, "CXR_WAREHOUSE_TLS_CA_FILE")
