"""Training batches from a split to the trial's device: GPU-resident, or staged from the host.

GPU-resident (the default when it fits the trial's share): the split is uploaded once
and a batch is an index on the GPU, with no copy per step.

Host path (datasets too large for the share): the split stays in pageable host memory.
Indexing a tensor returns a new pageable tensor, whatever the source's memory, so
pinning the whole split would not make its batches' copies asynchronous (and would pin a
copy per trial). Each batch is instead gathered straight into one of two preallocated
pinned buffers and copied from there with `non_blocking=True`; an event per buffer keeps
a batch from overwriting one whose copy is still in flight.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from trainables.data import ImageSplit

STAGING_BUFFERS = 2  # double buffering: gather batch k+1 while batch k is copied


class BatchFeeder:
    """Yields (images, labels) batches of `split` on `device`, in a given index order."""

    def __init__(
        self, split: ImageSplit, device: torch.device, on_device: bool, max_batch: int
    ) -> None:
        self.device = device
        self.resident = on_device or device.type == "cpu"
        home = device if self.resident else torch.device("cpu")
        self.split = ImageSplit(images=split.images.to(home), labels=split.labels.to(home))
        self._staging: list[tuple[torch.Tensor, torch.Tensor, torch.cuda.Event]] = []
        if not self.resident:
            self._staging = [_pinned_buffers(split, max_batch) for _ in range(STAGING_BUFFERS)]

    @property
    def index_device(self) -> torch.device:
        """Where a batch's indices must live: with the split."""
        return self.split.labels.device

    def __len__(self) -> int:
        return len(self.split)

    def batches(
        self, order: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Training batches in `order`; a last batch of one example is dropped."""
        for step, index in enumerate(index_batches(order, batch_size)):
            if self.resident:
                yield self.split.images[index], self.split.labels[index]
                continue
            buffers = self._ready_buffers(step, len(index))
            for out, source in zip(buffers, (self.split.images, self.split.labels), strict=True):
                torch.index_select(source, 0, index, out=out)
            yield self._copied(step, buffers)

    def in_order(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every example once, in order, as slices (for evaluation)."""
        for step, start in enumerate(range(0, len(self), batch_size)):
            window = slice(start, start + batch_size)
            if self.resident:
                yield self.split.images[window], self.split.labels[window]
                continue
            images, labels = self.split.images[window], self.split.labels[window]
            buffers = self._ready_buffers(step, len(labels))
            buffers[0].copy_(images)
            buffers[1].copy_(labels)
            yield self._copied(step, buffers)

    def _ready_buffers(self, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's pinned buffers, once the copy that last read them has finished."""
        images, labels, copied = self._staging[step % STAGING_BUFFERS]
        copied.synchronize()
        return images[:n], labels[:n]

    def _copied(
        self, step: int, buffers: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Start the batch's asynchronous copies to the device and mark its buffers busy."""
        images = buffers[0].to(self.device, non_blocking=True)
        labels = buffers[1].to(self.device, non_blocking=True)
        self._staging[step % STAGING_BUFFERS][2].record()
        return images, labels


def index_batches(order: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Index batches of `order`; a last batch of one example is dropped (batch norm needs 2)."""
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        if len(batch) > 1 or start == 0:
            yield batch


def split_bytes(split: ImageSplit) -> int:
    """Bytes the split's tensors take (uint8 images, int64 labels)."""
    return sum(t.numel() * t.element_size() for t in (split.images, split.labels))


def _pinned_buffers(
    split: ImageSplit, max_batch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.cuda.Event]:
    shape = (max_batch, *split.images.shape[1:])
    images = torch.empty(shape, dtype=split.images.dtype, pin_memory=True)
    labels = torch.empty(max_batch, dtype=split.labels.dtype, pin_memory=True)
    copied = torch.cuda.Event()
    copied.record()  # so the first synchronize() returns at once
    return images, labels, copied
