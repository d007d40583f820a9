"""Settings: the chain URL /healthz may publish."""

from __future__ import annotations

import pytest

from ledger.settings import Settings


@pytest.mark.parametrize(
    ("chain", "shown"),
    [
        ("http://10.0.0.5:8545", "http://10.0.0.5:8545"),
        ("https://mainnet.example.io/v3/0123456789abcdef", None),  # a provider key in the path
        ("https://user:secret@node.example.io", None),
        ("https://node.example.io/?apikey=secret", None),
    ],
)
def test_an_rpc_url_with_what_may_be_a_key_is_not_published(chain: str, shown: str | None) -> None:
    assert Settings(chain=chain).published_rpc_url(chain) == shown


def test_the_operator_names_the_public_url() -> None:
    settings = Settings(chain="https://node.example.io/v3/key", public_rpc_url="https://public.example.io")
    assert settings.published_rpc_url(settings.chain) == "https://public.example.io"


def test_the_managed_node_is_published() -> None:
    assert Settings(chain="managed").published_rpc_url("http://127.0.0.1:40123") == "http://127.0.0.1:40123"
    assert Settings(chain="embedded").published_rpc_url(None) is None
