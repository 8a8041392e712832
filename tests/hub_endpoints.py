"""The local Hub's endpoint handlers, one per route (mixed into HubServer of
tests/hubserver.py, whose `_route` picks them): each takes (request handler, body,
repo_type, repo_id, rest) and returns (status, headers, body) or raises HubError.
"""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import unquote

from hub_store import DEFAULT_NAMESPACE, Blob, HubError, _flag, _json


class HubEndpoints:
    """The `_h_*` handlers; state, locking and repo lookups come from HubServer."""

    def _h_create_repo(self, req, body, *_):
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or DEFAULT_NAMESPACE}/{payload['name']}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        self.create_repo(repo_id, repo_type, private)
        return _json({"url": self._repo_url(repo_type, repo_id), "name": repo_id})

    def _h_validate_yaml(self, req, body, *_):
        return _json({"errors": [], "warnings": []})

    def _h_repo_info(self, req, body, repo_type, repo_id, rest):
        revision = unquote(rest[0]) if rest else "main"
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sibling = {"rfilename": path}
            if _flag(req.query, "blobs"):
                sibling.update(size=blob.size, blobId=blob.blob_id)
                if blob.lfs:
                    sibling["lfs"] = {"size": blob.size, "sha256": blob.sha256,
                                      "pointerSize": len(blob.pointer)}
            siblings.append(sibling)
        return _json({
            "id": repo_id, "author": repo_id.split("/")[0], "sha": commit.oid,
            "lastModified": commit.date, "createdAt": repo.created_at, "private": repo.private,
            "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [],
            "siblings": siblings,
        })

    def _h_preupload(self, req, body, repo_type, repo_id, rest):
        with self._lock:
            commit = self._commit_at(self._repo(repo_type, repo_id), unquote(rest[0]))
        answers = []
        for file in json.loads(body)["files"]:
            existing = commit.files.get(file["path"])
            sample = base64.b64decode(file.get("sample", ""))
            answers.append({
                "path": file["path"],
                "uploadMode": self._upload_mode_for(commit, file["path"], sample),
                "shouldIgnore": False,  # the client crashes without this key
                # The client skips files whose local oid equals this one (sha256 for LFS files).
                "oid": existing.etag if existing else None,
            })
        return _json({"files": answers, "commitOid": commit.oid})

    def _h_commit(self, req, body, repo_type, repo_id, rest):
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, None, "The commit payload must start with a header line")
        if _flag(req.query, "create_pr"):
            raise HubError(400, None, "create_pr is not supported by the test hub")
        header, branch = lines[0]["value"], unquote(rest[0])
        with self._lock:  # everything below is checked on a copy, then swapped in: all or nothing
            repo = self._repo(repo_type, repo_id)
            if branch not in repo.branches:
                if repo.resolve(branch) is None:
                    raise HubError(404, "RevisionNotFound", f"Invalid rev id: {branch}")
                raise HubError(400, None, f"Can only commit to a branch, not {branch}")
            parent = repo.branches[branch]
            if header.get("parentCommit") not in (None, parent):
                raise HubError(412, None, "A commit has happened since. Please refresh.")
            files, sent, deleted, bytes_sent = dict(repo.commits[parent].files), [], [], 0
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value") or {}
                path = value.get("path", "")
                if key == "file":
                    content = value["content"]
                    data = (base64.b64decode(content) if value.get("encoding") == "base64"
                            else content.encode())
                    files[path], bytes_sent = Blob(data), bytes_sent + len(data)
                    sent.append(path)
                elif key == "lfsFile":
                    data = repo.lfs_objects.get(value["oid"])
                    if data is None:
                        raise HubError(422, None, f"LFS object {value['oid']} was never uploaded")
                    files[path] = Blob(data, lfs=True)
                    sent.append(path)
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, "EntryNotFound", "A file with this name doesn't exist")
                    deleted.append(path)
                elif key == "deletedFolder":
                    victims = [p for p in files if p.startswith(path.rstrip("/") + "/")]
                    if not victims:
                        raise HubError(404, "EntryNotFound", "No folder with this name")
                    for victim in victims:
                        del files[victim]
                    deleted.extend(victims)
                else:
                    raise HubError(400, None, f"Unknown commit operation {key!r}")
            commit = self._record_commit(
                repo, parent, header.get("summary", ""), header.get("description", ""), files,
                sent=sent, deleted=deleted, bytes_sent=bytes_sent,
            )
            repo.branches[branch] = commit.oid
        return _json({"success": True, "commitOid": commit.oid, "hookOutput": "",
                      "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{commit.oid}"})

    def _h_tree(self, req, body, repo_type, repo_id, rest):
        with self._lock:
            commit = self._commit_at(self._repo(repo_type, repo_id), unquote(rest[0]))
        base = unquote("/".join(rest[1:])).strip("/")
        return _json(self._tree_entries(commit.files, base, _flag(req.query, "recursive")))

    def _h_create_branch(self, req, body, repo_type, repo_id, rest):
        branch = unquote(rest[0])
        start = json.loads(body or b"{}").get("startingPoint") or "main"
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            if branch in repo.branches:
                raise HubError(409, None, f"Branch {branch} already exists")
            repo.branches[branch] = self._commit_at(repo, start).oid
        return _json({})

    def _h_create_tag(self, req, body, repo_type, repo_id, rest):
        tag = json.loads(body)["tag"]
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            target = self._commit_at(repo, unquote(rest[0])).oid
            if tag in repo.tags:
                raise HubError(409, None, f"Tag {tag} already exists")
            repo.tags[tag] = target
        return _json({})

    def _h_refs(self, req, body, repo_type, repo_id, rest):
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            return _json({
                "branches": [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
                             for name, oid in sorted(repo.branches.items())],
                "tags": [{"name": name, "ref": f"refs/tags/{name}", "targetCommit": oid}
                         for name, oid in sorted(repo.tags.items())],
                "converts": [], "pullRequests": [],
            })

    def _h_commits(self, req, body, repo_type, repo_id, rest):
        history = self.commits(repo_id, unquote(rest[0]) if rest else "main", repo_type)
        return _json([
            {"id": c.oid, "title": c.title, "message": c.description, "date": c.date,
             "authors": [{"user": DEFAULT_NAMESPACE, "avatar": None}]}
            for c in reversed(history)
        ])

    def _h_lfs_batch(self, req, body, repo_type, repo_id, rest):
        payload = json.loads(body)
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            objects = []
            for obj in payload.get("objects", []):
                answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                # No "actions" means "already stored": the client then skips the PUT.
                if obj["oid"] not in repo.lfs_objects:
                    href = (f"{self.endpoint}/api/__lfs/{repo_type}s/{repo_id}/{obj['oid']}")
                    answer["actions"] = {"upload": {"href": href}}
                objects.append(answer)
        return _json({"transfer": "basic", "objects": objects}, 200, None,
                     content_type="application/vnd.git-lfs+json")

    def _h_lfs_upload(self, req, body, repo_type, repo_id, rest):
        oid = rest[0]
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, None, f"Uploaded content does not match sha256 {oid}")
        with self._lock:
            self._repo(repo_type, repo_id).lfs_objects[oid] = body
            self.lfs_uploads.append((repo_id, oid, len(body)))
        return 200, {}, b""

    def _h_resolve(self, req, body, repo_type, repo_id, rest):
        with self._lock:
            commit = self._commit_at(self._repo(repo_type, repo_id), unquote(rest[0]))
        path = unquote("/".join(rest[1:]))
        blob = commit.files.get(path)
        if blob is None:  # X-Repo-Commit lets the client cache the file's absence
            raise HubError(404, "EntryNotFound", f"{path} does not exist",
                           {"X-Repo-Commit": commit.oid})
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{blob.etag}"',
                   "Content-Type": "application/octet-stream"}
        return 200, headers, blob.data
