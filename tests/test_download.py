"""download_ckpt.py against a real HTTP server on 127.0.0.1 (Range support, dropped connections, 404)."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from safetensors.torch import save

import download_ckpt
from download_ckpt import ADAPTERS, DownloadError, check_safetensors, download_file


def _payload(seed: int) -> bytes:
    g = torch.Generator().manual_seed(seed)
    return save({"base_model.model.x.lora_A.weight": torch.randn(64, 600, generator=g)})  # ~150 KB


class Server:
    """Serves ``files`` with HEAD/GET/Range; can drop a GET after N bytes or ignore Range."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop_after: int | None = None  # next GET sends only this many bytes, then closes
        self.ignore_range = False
        self.requests: list[tuple[str, str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _head(self, send_body: bool):
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append((self.command, name, self.headers.get("Range")))
                data = outer.files.get(name)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and not outer.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(data) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not send_body:
                    return
                body = data[start:]
                if outer.drop_after is not None:
                    body, outer.drop_after = body[: outer.drop_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def do_HEAD(self):
                self._head(False)

            def do_GET(self):
                self._head(True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/releases/download/v1.0.0-weights"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def gets(self):
        return [r for r in self.requests if r[0] == "GET"]


@pytest.fixture
def server():
    s = Server()
    for i, (filename, _) in enumerate(ADAPTERS.values()):
        s.files[filename] = _payload(i)
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _run(server, tmp_path, *args):
    return download_ckpt.main([*args, "--base_url", server.url, "--out_dir", str(tmp_path), "--no_progress",
                               "--timeout", "10"])


def test_all_then_skip(server, tmp_path, capsys):
    assert _run(server, tmp_path, "all") == 0
    for filename, folder in ADAPTERS.values():
        dest = tmp_path / folder / "adapter_model.safetensors"
        assert dest.read_bytes() == server.files[filename]
        assert (tmp_path / folder / "adapter_config.json").is_file(), "shipped config copied next to it"
        assert not (tmp_path / folder / "adapter_model.safetensors.part").exists()
    assert sorted(ADAPTERS) == ["i2v", "i2v-1k", "t2v", "t2v15", "ti2v"]
    # release file names and folders of upstream download_ckpt.py (Hongyang-Du/VideoGPA)
    assert ADAPTERS["ti2v"] == ("wan_ti2v_adapter_model.safetensors", "VideoGPA-Wan2.2TI2V-lora")
    assert ADAPTERS["i2v-1k"] == ("i2v_1k_adapter_model.safetensors", "VideoGPA-I2V-1K-lora")
    assert len(server.gets()) == 5
    capsys.readouterr()
    assert _run(server, tmp_path, "t2v") == 0
    assert len(server.gets()) == 5, "complete file must not be downloaded again"
    assert "skipped" in capsys.readouterr().out


def test_downloaded_folder_passes_adapter_validation(server, tmp_path):
    from utils.lora import validate_adapter_dir

    assert _run(server, tmp_path, "i2v") == 0
    assert validate_adapter_dir(tmp_path / "VideoGPA-I2V-lora") == tmp_path / "VideoGPA-I2V-lora"
    assert not (tmp_path / "VideoGPA-T2V-lora").exists()
    assert _run(server, tmp_path, "ti2v") == 0  # + the shipped Wan adapter_config.json (q/k/v/o)
    assert validate_adapter_dir(tmp_path / "VideoGPA-Wan2.2TI2V-lora").name == "VideoGPA-Wan2.2TI2V-lora"


def test_interrupted_download_resumes_with_range(server, tmp_path, capsys):
    data = server.files["t2v_adapter_model.safetensors"]
    dest = tmp_path / "VideoGPA-T2V-lora" / "adapter_model.safetensors"
    part = dest.with_name(dest.name + ".part")
    server.drop_after = 50_000
    assert _run(server, tmp_path, "t2v", "--retries", "0") == 1
    err = capsys.readouterr().err
    assert "connection closed after 50000 of" in err and "re-run to resume" in err
    assert not dest.exists() and part.read_bytes() == data[:50_000]

    assert _run(server, tmp_path, "t2v") == 0
    assert dest.read_bytes() == data and not part.exists()
    assert server.gets()[-1][2] == "bytes=50000-"
    assert "resumed" in capsys.readouterr().out


def test_automatic_retry_and_server_without_range(server, tmp_path):
    data = server.files["i2v_adapter_model.safetensors"]
    dest = tmp_path / "a" / "adapter_model.safetensors"
    server.drop_after = 30_000
    url = f"{server.url}/i2v_adapter_model.safetensors"
    assert download_file(url, dest, retries=2, progress=False) == "downloaded"
    assert dest.read_bytes() == data and [g[2] for g in server.gets()] == [None, "bytes=30000-"]

    # a server that ignores Range answers 200 with the whole file: start over, still correct
    server.ignore_range = True
    dest2 = tmp_path / "b" / "adapter_model.safetensors"
    dest2.parent.mkdir()
    dest2.with_name(dest2.name + ".part").write_bytes(b"\0" * 1000)  # garbage, must be overwritten
    assert download_file(url, dest2, progress=False) == "resumed"
    assert dest2.read_bytes() == data


def test_404_connection_refused_and_corrupt(server, tmp_path, capsys):
    del server.files["t2v15_adapter_model.safetensors"]
    assert _run(server, tmp_path, "t2v15") == 1
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "t2v15_adapter_model.safetensors" in err
    assert not any((tmp_path / "VideoGPA-T2V1.5-lora").glob("adapter_model*"))

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = download_ckpt.main(["t2v", "--base_url", f"http://127.0.0.1:{port}/x", "--out_dir", str(tmp_path),
                             "--no_progress", "--timeout", "5"])
    assert rc == 1 and "cannot connect" in capsys.readouterr().err

    server.files["t2v_adapter_model.safetensors"] = b"<html>rate limited</html>"
    assert _run(server, tmp_path, "t2v") == 1
    assert "not a valid safetensors file" in capsys.readouterr().err
    assert not any((tmp_path / "VideoGPA-T2V-lora").glob("adapter_model*"))


def test_check_safetensors(tmp_path):
    good = tmp_path / "g.safetensors"
    good.write_bytes(_payload(0))
    check_safetensors(good)
    good.write_bytes(_payload(0)[:-10])
    with pytest.raises(DownloadError, match="g.safetensors"):
        check_safetensors(good)
