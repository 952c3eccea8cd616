"""Ready-made container disks, so creating a container costs no mkfs and no mount.

A new box's disk (a sparse image, ``mkfs.ext4``, a loop mount: ~30 ms here, mostly CPU)
is made ahead of time in the pool directory, which lives on the same filesystem as the
boxes. Taking one is a ``rename`` of its directory (the mount moves with it) and a
``chown`` of its three directories to the new box's uid. The pool refills in the
background after each take; when it is empty, a box's disk is made on the spot as before.
Entries left by a previous server are unmounted and deleted at start (they held nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from execbox.sandbox import disk
from execbox.sandbox.types import Box

log = logging.getLogger("execbox.sandbox")

POOL_UID = 0  # until taken: root's


class DiskPool:
    def __init__(
        self, directory: Path, size: int, disk_bytes: int, *, loop: bool, prepare: Callable[[Box], None]
    ) -> None:
        self.directory = directory
        self.size = size
        self.disk_bytes = disk_bytes
        self.loop = loop
        self.prepare = prepare  # what every new box gets on its disk (e.g. caches), as uid 0
        self._ready: list[Box] = []
        self._filling: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        """Clear entries of an earlier run, then fill the pool in the background."""
        if self.size <= 0:
            return
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in sorted(self.directory.iterdir()):
            with contextlib.suppress(Exception):
                await disk.destroy(Box(stale.name, POOL_UID, stale))
        self.refill()

    def refill(self) -> None:
        if self.size > 0 and not self._closed and (self._filling is None or self._filling.done()):
            self._filling = asyncio.create_task(self._fill(), name="execbox-disk-pool")

    async def _fill(self) -> None:
        while not self._closed and len(self._ready) < self.size:
            entry = Box(f"pool-{uuid.uuid4().hex[:12]}", POOL_UID, self.directory / uuid.uuid4().hex[:12])
            try:
                await disk.create(entry, self.disk_bytes, loop=self.loop)
                await asyncio.to_thread(self.prepare, entry)
            except Exception as exc:  # no capacity now: boxes are made on demand meanwhile
                log.warning("could not prepare a spare container disk: %s", exc)
                with contextlib.suppress(Exception):
                    await disk.destroy(entry)
                return
            self._ready.append(entry)

    async def take(self, box: Box) -> bool:
        """Give ``box`` a ready disk; False when none is ready (the caller makes one)."""
        while self._ready:
            entry = self._ready.pop()
            try:
                await asyncio.to_thread(self._adopt, entry, box)
            except OSError as exc:
                log.warning("a spare container disk could not be used: %s", exc)
                with contextlib.suppress(Exception):
                    await disk.destroy(entry)
                continue
            self.refill()
            return True
        self.refill()
        return False

    @staticmethod
    def _adopt(entry: Box, box: Box) -> None:
        os.rename(entry.root, box.root)  # its mount point moves along
        disk.adopt(box)

    async def close(self) -> None:
        self._closed = True
        if self._filling is not None:
            self._filling.cancel()
            with contextlib.suppress(BaseException):
                await self._filling
        for entry in self._ready:
            with contextlib.suppress(Exception):
                await disk.destroy(entry)
        self._ready.clear()
