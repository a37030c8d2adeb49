import pytest

from gridd.ipfs import parse_api_address


@pytest.mark.parametrize(
    "text,url",
    [
        ("/ip4/127.0.0.1/tcp/5001", "http://127.0.0.1:5001"),
        ("/ip6/::1/tcp/5002", "http://[::1]:5002"),
        ("/dns4/node.example/tcp/80/https", "https://node.example:80"),
        ("http://10.0.0.2:5001", "http://10.0.0.2:5001"),
        ("localhost:7000", "http://localhost:7000"),
    ],
)
def test_accepts_multiaddr_and_url(text: str, url: str) -> None:
    assert parse_api_address(text).url == url


@pytest.mark.parametrize("bad", ["/ip4/127.0.0.1/udp/5001", "/ip4/1.2.3.4/tcp/notaport", "ftp://x:1"])
def test_rejects_bad_addresses(bad: str) -> None:
    with pytest.raises(ValueError, match="cannot read API address"):
        parse_api_address(bad)


def test_environment_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDD_IPFS_API", "/ip4/127.0.0.1/tcp/6001")
    assert parse_api_address().port == 6001
    monkeypatch.delenv("GRIDD_IPFS_API")
    assert parse_api_address().multiaddr == "/ip4/127.0.0.1/tcp/5001"
