"""A stand-in for the Hugging Face model hub on 127.0.0.1: real HTTP, the hub's own API paths.

huggingface_hub honours `HF_ENDPOINT`, so pointing it here runs the project's real download code
(`snapshot_download` and everything it calls) against folders the tests made. What is served is
what huggingface_hub reads from huggingface.co:

- `GET /api/models/{repo}[/revision/{rev}]`: the repository's info (`sha`, `siblings`, ...);
- `GET /api/models/{repo}/tree/{rev}?recursive=...`: its files (`oid`, `size`, `lfs` for big ones);
- `HEAD|GET /{repo}/resolve/{rev}/{path}`: a small file answers itself (`ETag`, `X-Repo-Commit`);
  a large-file-storage one (weights) answers `302` to a second origin, the "CDN", with
  `X-Linked-Etag` / `X-Linked-Size`, as the hub does, and the CDN serves the bytes (with `Range`);
- an unknown repository answers 401 with `X-Error-Code: RepoNotFound`, an unknown file 404 with
  `X-Error-Code: EntryNotFound`.

Every request is logged (`requests`), so a test can tell which files were fetched.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

LFS_SUFFIXES = (".bin", ".safetensors", ".h5", ".msgpack", ".onnx", ".pt")  # as the hub's default .gitattributes


@dataclass
class HubFile:
    path: str
    data: bytes
    blob_id: str  # git's blob sha1
    sha256: str

    @property
    def lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES)


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile] = field(default_factory=dict)
    commit: str = ""


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubServer:
    """The hub on one port, its file CDN on another (a different origin, as on the real hub)."""

    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self._lock = threading.Lock()
        self._hub = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(cdn=False))
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(cdn=True))
        self._threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self._hub, self._cdn)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def start(self) -> HubServer:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        started = any(thread.is_alive() for thread in self._threads)
        for server in (self._hub, self._cdn):
            if started:
                server.shutdown()
            server.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def add_repo(self, repo_id: str, folder: Path) -> str:
        """Serve every file under `folder` as `repo_id` (a new commit each time); its commit sha."""
        repo = HubRepo(repo_id)
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                rel = path.relative_to(folder).as_posix()
                repo.files[rel] = HubFile(rel, data, _blob_id(data), hashlib.sha256(data).hexdigest())
        repo.commit = hashlib.sha1(
            (repo_id + "".join(f.path + f.blob_id for f in repo.files.values())).encode()
        ).hexdigest()
        with self._lock:
            self.repos[repo_id] = repo
        return repo.commit

    def fetched(self, suffix: str) -> int:
        """How many GETs downloaded a file whose path ends with `suffix` (from the hub or the CDN)."""
        with self._lock:
            return sum(1 for method, path in self.requests if method == "GET" and path.endswith(suffix))

    # --- HTTP ---------------------------------------------------------------------------------

    def _handler(self, cdn: bool):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:  # keep test output clean; requests are kept in `hub.requests`
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                url = urlparse(self.path)
                path = unquote(url.path)
                with hub._lock:
                    hub.requests.append((self.command, path if not cdn else "/cdn" + path))
                if cdn:
                    return self._cdn(path, body)
                if match := re.fullmatch(r"/api/models/(.+?)/revision/([^/]+)", path):
                    return self._info(match[1], match[2])
                if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)", path):
                    return self._info(match[1], "main")
                if match := re.fullmatch(r"/api/models/(.+?)/tree/([^/]+)(/.*)?", path):
                    return self._tree(match[1], match[2], (match[3] or "").lstrip("/"), parse_qs(url.query))
                if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                    return self._resolve(match[1], match[2], match[3], body)
                self._error(404, "EntryNotFound", f"no route for {path}")

            def _repo(self, repo_id: str, revision: str) -> HubRepo | None:
                with hub._lock:
                    repo = hub.repos.get(repo_id)
                if repo is None:
                    self._error(401, "RepoNotFound", f"Repository Not Found for url: {self.path}.")
                    return None
                if revision not in ("main", repo.commit):
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                    return None
                return repo

            def _info(self, repo_id: str, revision: str) -> None:
                if (repo := self._repo(repo_id, revision)) is None:
                    return
                self._json(
                    {
                        "_id": repo.commit[:24],
                        "id": repo_id,
                        "modelId": repo_id,
                        "author": repo_id.split("/", maxsplit=1)[0],
                        "sha": repo.commit,
                        "private": False,
                        "gated": False,
                        "disabled": False,
                        "lastModified": "2022-06-01T21:45:28.000Z",
                        "library_name": "transformers",
                        "pipeline_tag": "text-generation",
                        "tags": ["transformers", "pytorch", "gpt2", "text-generation"],
                        "siblings": [{"rfilename": f.path} for f in repo.files.values()],
                    }
                )

            def _tree(self, repo_id: str, revision: str, under: str, query: dict) -> None:
                if (repo := self._repo(repo_id, revision)) is None:
                    return
                recursive = query.get("recursive", ["false"])[0].lower() == "true"
                entries, folders = [], set()
                for f in repo.files.values():
                    if under and not f.path.startswith(under.rstrip("/") + "/"):
                        continue
                    rest = f.path[len(under.rstrip("/") + "/") :] if under else f.path
                    if "/" in rest and not recursive:
                        folders.add((under.rstrip("/") + "/" if under else "") + rest.split("/")[0])
                        continue
                    entry = {"type": "file", "oid": f.blob_id, "size": len(f.data), "path": f.path}
                    if f.lfs:
                        entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}
                    entries.append(entry)
                entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": p} for p in sorted(folders)]
                if under and not entries:
                    return self._error(404, "EntryNotFound", f'{under} does not exist on "{revision}"')
                self._json(entries)

            def _resolve(self, repo_id: str, revision: str, file_path: str, body: bool) -> None:
                if (repo := self._repo(repo_id, revision)) is None:
                    return
                f = repo.files.get(file_path)
                if f is None:
                    return self._error(404, "EntryNotFound", f'{file_path} does not exist on "{revision}"')
                headers = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes"}
                if f.lfs:
                    self.send_response(302)
                    for key, value in {
                        **headers,
                        "X-Linked-Etag": f'"{f.sha256}"',
                        "X-Linked-Size": str(len(f.data)),
                        "ETag": f'"{f.blob_id}"',
                        "Location": f"{hub.cdn_url}/{f.sha256}",
                        "Content-Length": "0",
                    }.items():
                        self.send_header(key, value)
                    self.end_headers()
                    return
                self._bytes(f.data, body, {**headers, "ETag": f'"{f.blob_id}"'})

            def _cdn(self, path: str, body: bool) -> None:
                sha = path.strip("/")
                with hub._lock:
                    found = next((f for r in hub.repos.values() for f in r.files.values() if f.sha256 == sha), None)
                if found is None:
                    return self._error(404, "EntryNotFound", "no such object")
                self._bytes(found.data, body, {"ETag": f'"{found.sha256}"', "Accept-Ranges": "bytes"})

            def _bytes(self, data: bytes, body: bool, headers: dict[str, str]) -> None:
                start, status = 0, 200
                if (wanted := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))) and int(wanted[1]) < len(
                    data
                ):
                    start, status = int(wanted[1]), 206
                    headers = {**headers, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
                chunk = data[start:]
                self.send_response(status)
                for key, value in {
                    **headers,
                    "Content-Length": str(len(chunk)),
                    "Content-Type": "application/octet-stream",
                }.items():
                    self.send_header(key, value)
                self.end_headers()
                if body:
                    self.wfile.write(chunk)

            def _json(self, value) -> None:
                data = json.dumps(value).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _error(self, status: int, code: str, message: str) -> None:
                data = json.dumps({"error": message}).encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":  # a HEAD answer has headers only
                    self.wfile.write(data)

        return Handler
