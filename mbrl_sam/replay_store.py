"""A replay buffer mirrored on disk as chunk files, so that a checkpoint holds only counts.

Full chunks are written as records arrive (`write_due`, after each add), the rest when a
checkpoint is about to be written (`flush`); once that checkpoint is written, `retain` deletes
the chunks no kept checkpoint needs. Nothing else writes or deletes: `state_dict` only reads.
"""

from __future__ import annotations

from mbrl_sam.replay import SequenceReplay
from mbrl_sam.replay_chunks import ReplayChunks


class ChunkStore:
    """The chunk files of one replay buffer and how far they cover it."""

    def __init__(self, files: ReplayChunks, replay: SequenceReplay, chunk_size: int = 1024) -> None:
        """Chunks hold `chunk_size` records (at most the buffer's capacity)."""
        self.files, self.replay = files, replay
        self.chunk_size = min(int(chunk_size), replay.capacity)
        self.flushed = 0  # records written to chunk files
        self.saved = 0  # records covered by the last checkpoint written

    @property
    def pending(self) -> int:
        """Records added but not yet in a chunk file."""
        return self.replay.total_added - self.flushed

    def write_due(self) -> None:
        """Write the records added since the last chunk as a new chunk once there are
        `chunk_size` of them; called after every add, so no record is overwritten unwritten."""
        if self.pending >= self.chunk_size:
            self.flush()

    def flush(self) -> None:
        """Write every record not yet on disk as a new chunk (none when there is none)."""
        if self.pending > self.replay.capacity:
            raise RuntimeError(
                f"{self.pending - self.replay.capacity} replay records were overwritten before "
                "they were written: call write_due() after every add"
            )
        if self.pending > 0:
            total = self.replay.total_added
            self.files.write(self.flushed, self.replay.records(self.flushed, total))
            self.flushed = total

    def retain(self, covered: int) -> None:
        """A checkpoint covering the first `covered` records has been written and verified:
        delete the chunks whose records were all evicted before the previous checkpoint, which
        is kept as its fallback and may still need the rest."""
        self.files.drop_before(self.saved - self.replay.capacity)
        self.saved = covered

    def state_dict(self) -> dict:
        """The buffer's state without its records, which the chunk files hold: call `flush`
        first. Writes and deletes nothing."""
        if self.pending:
            raise RuntimeError(
                f"{self.pending} replay records are not in chunk files yet: flush() before "
                "state_dict()"
            )
        return self.replay.state_dict(records=False)

    def load_state_dict(self, state: dict, read_only: bool = False) -> None:
        """Rebuild the buffer from a checkpoint's replay state and the chunk files. Chunks
        written after that checkpoint are deleted first, unless `read_only` (a reader beside a
        run that may still be training: then no chunk file is written or deleted)."""
        self.replay.check_fits(state)
        size, total = int(state["size"]), int(state["total"])
        if "data" in state:  # a checkpoint from before chunk files
            self.replay.load_state_dict(state)
            self.flushed = self.saved = total
            if not read_only:  # its records become the first chunk
                self.files.drop_after(total - size)
                self.flushed = total - size
                self.flush()
            return
        if not read_only:
            # Written after this checkpoint by the run that died, or by one that went on.
            self.files.drop_after(total)
        self.replay.load_state_dict(state, self.files.read(total - size, total))
        self.flushed = self.saved = total
