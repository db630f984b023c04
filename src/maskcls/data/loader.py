"""Datasets, samplers and the Lightning data module over the decode-once cache.

A batch is fetched with one fancy-index into the cached array (``__getitems__``), not photo by
photo; it stays uint8 until it reaches the device, where ``BatchPreprocess`` takes over.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..core.labels import NUM_CLASSES


class CachedImages(Dataset):
    """Rows ``rows`` of a ``(N, H, W, 3)`` uint8 array (a cache file's path, or the array), with targets when known.

    Batches are ``(pixels uint8 NHWC, targets (N, 2) = [class, age in years], positions)``, -1 where
    unknown; ``positions`` index into ``rows``, so predictions can be put back in order whatever the
    sampler or the number of processes did.
    """

    def __init__(self, pixels: str | np.ndarray, rows: np.ndarray, targets: np.ndarray | None = None):
        self.cache_path = None if isinstance(pixels, np.ndarray) else str(pixels)
        self._pixels = pixels if isinstance(pixels, np.ndarray) else None  # files are mapped lazily, per process
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = (
            np.full((len(self.rows), 2), -1, dtype=np.int64) if targets is None else np.asarray(targets, dtype=np.int64)
        )

    def __len__(self) -> int:
        return len(self.rows)

    def _array(self):
        if self._pixels is None:
            self._pixels = np.load(self.cache_path, mmap_mode="r")
        return self._pixels

    def __getitem__(self, position: int):
        return self.__getitems__([position])

    def to_device(self, pixels: torch.Tensor) -> None:
        """Serve batches from ``pixels``, the whole cache already in device memory: indexing happens there."""
        self._device_pixels = pixels
        self._device_rows = torch.as_tensor(self.rows, device=pixels.device)
        self._device_targets = torch.as_tensor(self.targets, device=pixels.device)

    def __getitems__(self, positions):
        if getattr(self, "_device_pixels", None) is not None:
            index = torch.as_tensor(positions, dtype=torch.long, device=self._device_pixels.device)
            return self._device_pixels[self._device_rows[index]], self._device_targets[index], index
        positions = np.asarray(positions, dtype=np.int64)
        rows = self.rows[positions]
        order = np.argsort(rows)  # sorted reads are sequential on disk
        pixels = np.empty((len(rows), *self._array().shape[1:]), dtype=np.uint8)
        pixels[order] = self._array()[rows[order]]
        return torch.from_numpy(pixels), torch.from_numpy(self.targets[positions]), torch.from_numpy(positions)

    def __getstate__(self):
        state = self.__dict__.copy()
        if self.cache_path is not None:
            state["_pixels"] = None
        return state


def keep_batch(batch):
    """``collate_fn`` for datasets that already return whole batches."""
    return batch


class EpochSampler(Sampler[int]):
    """Uniform shuffle, or weighted draws with replacement, seeded by ``(seed, epoch)``.

    Seeding per epoch makes a resumed run replay the same batches, and makes every DDP rank compute
    the same global draw, of which Lightning's ``DistributedSamplerWrapper`` hands each rank its share.
    ``epoch_source`` (e.g. the trainer's current epoch) is read when iteration starts: Lightning creates
    a resumed run's first iterator before it calls ``set_epoch``.
    """

    def __init__(
        self,
        population: int,
        weights: np.ndarray | None = None,
        seed: int = 0,
        num_samples: int | None = None,
        epoch_source=None,
    ):
        self.population = int(population)
        self.num_samples = self.population if num_samples is None else int(num_samples)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.seed = int(seed)
        self.epoch = 0
        self.epoch_source = epoch_source

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        epoch = self.epoch_source() if self.epoch_source is not None else self.epoch
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        if self.weights is None:
            order = torch.randperm(self.population, generator=generator)[: self.num_samples]
        else:
            order = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)
        return iter(order.tolist())


def balanced_weights(labels: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Per-sample weight ``count(class) ** -alpha``: 0 keeps the data's balance, 1 draws classes equally."""
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    return np.power(np.maximum(counts[labels], 1.0), -alpha)


class FoldDataModule(pl.LightningDataModule):
    """Train and validation loaders of one fold (validation may be empty when training on all data)."""

    def __init__(
        self,
        cache_path: str,
        train_rows: np.ndarray,
        train_targets: np.ndarray,
        val_rows: np.ndarray,
        val_targets: np.ndarray,
        batch_size: int,
        sample_weights: np.ndarray | None = None,
        seed: int = 0,
        workers: int | None = None,
        device_cache: str = "auto",
        device_cache_gb: float = 16.0,
    ):
        super().__init__()
        self.cache_path = cache_path
        self.train_set = CachedImages(cache_path, train_rows, train_targets)
        self.val_set = CachedImages(cache_path, val_rows, val_targets)
        self.batch_size = batch_size
        self.sample_weights = sample_weights
        self.seed = seed
        self.workers = workers
        self.device_cache = device_cache
        self.device_cache_gb = device_cache_gb
        self.resident = False

    def setup(self, stage: str) -> None:
        """Upload the decoded cache to the accelerator once, when it fits the budget (``data.device_cache``).

        Then every batch is gathered, augmented and fed on the device: the data path costs no host work.
        """
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        pixels = np.load(self.cache_path, mmap_mode="r")
        fits = pixels.nbytes <= self.device_cache_gb * 2**30
        wanted = self.device_cache == "on" or (self.device_cache == "auto" and device.type == "cuda")
        if wanted and fits and not self.resident:
            on_device = torch.from_numpy(np.load(self.cache_path)).to(device)  # read whole, then one upload
            for dataset in (self.train_set, self.val_set):
                dataset.to_device(on_device)
            self.resident = True

    def train_dataloader(self):
        # Under DDP every rank draws the same global sample and Lightning's DistributedSamplerWrapper gives
        # each rank its share; a multiple of the world size means no rank pads with repeated photos.
        world = self.trainer.world_size if self.trainer is not None else 1
        draws = (
            len(self.train_set) - len(self.train_set) % world if len(self.train_set) >= world else len(self.train_set)
        )
        sampler = EpochSampler(
            len(self.train_set), self.sample_weights, self.seed, draws, epoch_source=self.current_epoch
        )
        return self._loader(self.train_set, sampler=sampler, drop_last=len(self.train_set) > self.batch_size)

    def current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def val_dataloader(self):
        return self._loader(self.val_set)

    def _loader(self, dataset, sampler=None, drop_last=False):
        on_gpu = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        # Resident batches are already on the device; streamed ones come from the memory map through pinned
        # memory, with a few workers on a GPU machine (on a CPU they would only take cores from training).
        workers = 0 if self.resident else (self.workers if self.workers is not None else (4 if on_gpu else 0))
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=False,
            drop_last=drop_last,
            collate_fn=keep_batch,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=on_gpu and not self.resident,
        )


def prediction_loader(pixels: str | np.ndarray, rows: np.ndarray, batch_size: int, workers: int = 0) -> DataLoader:
    return DataLoader(
        CachedImages(pixels, rows),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=keep_batch,
        num_workers=workers,
    )
