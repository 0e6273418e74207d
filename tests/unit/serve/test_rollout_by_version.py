"""A rollout's candidate named by version alone: the server fetches it from the registry it
follows (a controller in another container or pod cannot hand it a folder), refuses a model
of another name and a version the registry does not have, and without a registry asks for
the folder. In process, a real MLflow registry (SQLite) holding the tiny search models."""

from __future__ import annotations

import pytest
from conftest import two_search_versions
from fastapi.testclient import TestClient

from shelfops.config.schema import ServeConfig
from shelfops.serve.app import ServeSettings, create_app
from shelfops.serve.watch import registry_versions

TOKEN = "by-version-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def registry(models, tmp_path_factory):
    return two_search_versions(models, tmp_path_factory.mktemp("by-version"))


def _client(registry, small_shop, fetch: bool | object) -> TestClient:
    loader = (registry_versions(registry, "shop") if fetch is True else None if fetch is False else fetch)
    settings = ServeSettings(models={"search": (registry.load("shop-search", "1"), "1")}, data_dir=small_shop,
                             admin_token=TOKEN, serve=ServeConfig(rerank_depth=10), fetch_version=loader)
    return TestClient(create_app(settings))


def test_the_server_fetches_the_candidate_version_from_its_registry(registry, small_shop):
    with _client(registry, small_shop, fetch=True) as c:
        other = c.post("/admin/rollout", headers=ADMIN, json={
            "task": "search", "mode": "canary", "percent": 100, "version": "2", "model": "other-search"})
        assert other.status_code == 400 and other.json()["field"] == "model", other.text
        missing = c.post("/admin/rollout", headers=ADMIN, json={
            "task": "search", "mode": "canary", "percent": 100, "version": "9"})
        assert missing.status_code == 400 and missing.json()["field"] == "version", missing.text
        assert c.get("/v1/rollout").json() == {}  # neither refusal started anything

        # the controller's folder is not on this server's disk: the version comes from the registry
        start = c.post("/admin/rollout", headers=ADMIN, json={
            "task": "search", "mode": "canary", "percent": 100, "version": "2", "model": "shop-search",
            "folder": "/nowhere/on/this/server"})
        assert start.status_code == 200, start.text
        assert c.post("/v1/search", json={"query": "shoes", "k": 3, "user": "u1"}).json()["versions"]["search"] == "2"
        end = c.post("/admin/rollout/end", headers=ADMIN, json={"task": "search", "promote": True})
        assert end.json() == {"task": "search", "promoted": True, "production": "2"}


def test_without_a_registry_the_version_alone_is_refused_naming_the_folder(registry, small_shop):
    with _client(registry, small_shop, fetch=False) as c:
        r = c.post("/admin/rollout", headers=ADMIN, json={"task": "search", "mode": "shadow", "version": "2"})
        assert r.status_code == 400 and r.json()["field"] == "folder", r.text
        assert "follows no registry" in r.json()["message"]
        assert c.get("/v1/rollout").json() == {}


def test_a_registry_that_does_not_answer_is_a_503_and_production_keeps_serving(registry, small_shop):
    def unreachable(task, version, model=None):
        raise ConnectionError("registry at http://mlflow:5000 refused the connection")

    with _client(registry, small_shop, fetch=unreachable) as c:
        r = c.post("/admin/rollout", headers=ADMIN, json={"task": "search", "mode": "shadow", "version": "2"})
        assert r.status_code == 503 and "could not fetch version 2" in r.json()["message"], r.text
        assert c.get("/v1/rollout").json() == {}
        assert c.post("/v1/search", json={"query": "shoes", "k": 3}).json()["versions"]["search"] == "1"
