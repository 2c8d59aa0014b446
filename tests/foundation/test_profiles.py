"""The env/ profiles parse, hold no secret, and the embedded one matches the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr.config import Settings

ENV_DIR = Path(__file__).resolve().parents[2] / "env"


@pytest.mark.unit
def test_embedded_profile_is_the_defaults():
    text = (ENV_DIR / "embedded.env").read_text()
    assert all(not line.strip() or line.startswith("#") for line in text.splitlines())  # only comments
    # each documented setting exists and shows its default value (a new field should get a line too)
    documented = {line[2:].split("=", 1)[0] for line in text.splitlines() if line.startswith("# CXR_")}
    assert documented <= {f"CXR_{name.upper()}" for name in Settings.model_fields}
    assert {"CXR_DATA_DIR", "CXR_DB_URL", "CXR_LAKE_URL", "CXR_WAREHOUSE_URL", "CXR_SSH_HOST"} <= documented
    for line in text.splitlines():
        if line.startswith("# CXR_"):
            key, value = line[2:].split("=", 1)
            default = Settings.model_fields[key[4:].lower()].default
            assert str("" if default is None else default) == value or key == "CXR_SERVICES_PORTS", key


@pytest.mark.unit
def test_aws_example_parses_and_has_no_secret():
    settings = Settings(_env_file=ENV_DIR / "aws.env.example")
    assert settings.db_url.startswith("mysql+pymysql://")
    assert settings.lake_url.startswith("s3://")
    assert "tls=true" in settings.warehouse_url and "retryWrites=false" in settings.warehouse_url
    assert settings.warehouse_tls_ca_file is not None and settings.glue_job_name and settings.ssh_host
    text = (ENV_DIR / "aws.env.example").read_text()
    assert "AWS_SECRET_ACCESS_KEY" not in text and "CHANGE_ME_FROM_ENV" in text


@pytest.mark.integration
def test_local_services_profile_documents_what_up_writes(services):
    documented = {line.split("=", 1)[0] for line in (ENV_DIR / "local-services.env").read_text().splitlines()
                  if line and not line.startswith("#")}
    assert documented == set(services)
