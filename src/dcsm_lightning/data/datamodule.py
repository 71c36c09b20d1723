"""LightningDataModules that turn raw samples into batches of the batch contract (one
sample's preparation and the collation: :mod:`dcsm_lightning.data.samples`).

See ``docs/contracts.md``: every DataLoader yields a dict with ``image`` (float32 B x 3 x S x S,
normalised, padding exactly 0), ``rgb`` (uint8 B x S x S x 3), ``labels`` (float32 B x K),
``mask`` (int64 B x S x S, only when every sample has one), ``valid`` (bool B x S x S),
``orig_size`` (int64 B x 2) and ``id`` (list of str).
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler

from dcsm_lightning.data.masks import MaskFolder
from dcsm_lightning.data.samples import PreparedDataset, collate_batch
from dcsm_lightning.data.synthetic import SyntheticScenes
from dcsm_lightning.data.voc import VOCSegmentation, resolve_class_names


class _InMemory(Dataset):
    """The samples of a dataset, computed once."""

    def __init__(self, dataset: Dataset) -> None:
        self.samples = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
        self.ids = [str(s["id"]) for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.samples[index]


class SegmentationDataModule(LightningDataModule):
    """Base datamodule: letterboxing, normalisation, collation and the four dataloaders.

    Subclasses set ``class_names`` in ``__init__`` and implement :meth:`make_dataset`, which
    returns a dataset of raw samples for a split name. Train batches are shuffled, flipped
    left-right at random (``hflip``) and drop an incomplete last batch (BatchNorm); multi-scale
    resizing is the model's job.

    Args:
        size: S, the letterbox side of every batch.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes (0: load in the main process).
        pin_memory: pin batches in page-locked memory (for GPU training).
        hflip: random horizontal flips of training samples.
        train_split, val_split: split names for fit / validate.
        test_split: split for ``test``; None: ``val_split``.
        predict_split: split for ``predict``; None: ``val_split``.
        train_mask_root: train on the masks in ``<train_mask_root>/SegmentationClass/<id>.png``
            (the output of ``dcsm-lightning pseudo-labels``, see
            :class:`~dcsm_lightning.data.masks.MaskFolder`) instead of the split's own;
            validation, test and predict keep the dataset's masks.
    """

    def __init__(
        self,
        size: int,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
        hflip: bool = True,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        predict_split: str | None = None,
        train_mask_root: str | None = None,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("size", size, 1),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        self.size = size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.hflip = hflip
        self.class_names: list[str] = []  # the K foreground names; set by subclasses
        self.splits = {
            "train": train_split,
            "val": val_split,
            "test": test_split or val_split,
            "predict": predict_split or val_split,
        }
        self.train_mask_root = train_mask_root
        self._datasets: dict[str, Dataset] = {}

    @property
    def has_masks(self) -> bool:
        """Whether validation / test batches carry masks (mIoU needs them)."""
        return True

    @property
    def num_classes(self) -> int:
        """K, the number of foreground classes (linked to ``model.num_classes`` by the CLI)."""
        return len(self.class_names)

    def make_dataset(self, split: str) -> Dataset:
        """A dataset of raw samples (``rgb``, ``mask``, ``labels``, ``id``) for ``split``."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        wanted = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("predict",),
        }.get(stage or "", ("train", "val", "test", "predict"))
        for role in wanted:
            self.dataset(role)

    def dataset(self, role: str) -> Dataset:
        """The raw dataset for ``role`` (train / val / test / predict), built on first use."""
        if role not in self._datasets:
            dataset = self.make_dataset(self.splits[role])
            if role == "train" and self.train_mask_root is not None:
                preload = isinstance(dataset, _InMemory)  # read and check every mask now
                dataset = MaskFolder(dataset, self.train_mask_root, self.num_classes, preload)
            self._datasets[role] = dataset
        return self._datasets[role]

    def _loader(self, role: str) -> DataLoader:
        train = role == "train"
        prepared = PreparedDataset(self.dataset(role), self.size, hflip=train and self.hflip)
        return DataLoader(
            prepared,
            batch_size=self.batch_size,
            shuffle=train,
            sampler=None if train else self._evaluation_sampler(prepared),
            drop_last=train and len(prepared) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_batch,
        )

    def _evaluation_sampler(self, dataset: Dataset) -> Sampler | None:
        """Under DDP, each image on exactly one process (no padding repeats): metrics stay exact.

        Lightning's default ``DistributedSampler`` repeats images so that every process gets
        as many; the repeats would be counted twice by the validation / test metrics.
        """
        trainer = self.trainer
        kwargs = trainer.distributed_sampler_kwargs if trainer is not None else None
        if not kwargs or kwargs.get("num_replicas", 1) <= 1:
            return None
        return UnrepeatedDistributedSampler(dataset, shuffle=False, **kwargs)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")


class SyntheticDataModule(SegmentationDataModule):
    """The built-in :class:`~dcsm_lightning.data.synthetic.SyntheticScenes`, kept in memory.

    Splits are ``"train"``, ``"val"`` and ``"test"`` (independent streams of the same seed);
    ``test`` uses its own ``num_test`` images. ``family`` picks the scenes: ``shapes`` (six
    large textured shapes) or ``glyphs`` (five small ones, a different look to try a recipe
    on; ``configs/data/glyphs.yaml``).

    Args:
        num_train, num_val: split sizes.
        size: image side S (the scenes are drawn at this size, so no resampling happens).
        seed: dataset seed (independent of the training seed).
        batch_size, num_workers, pin_memory, hflip: see :class:`SegmentationDataModule`.
        num_test: size of the ``test`` split.
        predict_split: ``"train"``, ``"val"`` or ``"test"``; None: ``"val"``.
        train_mask_root: train on these masks (pseudo-labels), see
            :class:`SegmentationDataModule`.
        family: the scene family, ``"shapes"`` or ``"glyphs"``
            (:data:`~dcsm_lightning.data.synthetic.SCENE_FAMILIES`).

    Raises:
        ValueError: bad sizes, seed, batch size, ``predict_split`` or ``family``.
    """

    def __init__(
        self,
        num_train: int = 800,
        num_val: int = 200,
        size: int = 96,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
        hflip: bool = True,
        num_test: int = 200,
        predict_split: str | None = None,
        train_mask_root: str | None = None,
        family: str = "shapes",
    ) -> None:
        super().__init__(
            size,
            batch_size,
            num_workers,
            pin_memory,
            hflip,
            train_split="train",
            val_split="val",
            test_split="test",
            predict_split=predict_split,
            train_mask_root=train_mask_root,
        )
        if predict_split not in (None, "train", "val", "test"):
            raise ValueError(
                f"predict_split must be 'train', 'val' or 'test', got {predict_split!r}"
            )
        self.save_hyperparameters()
        self.counts = {"train": num_train, "val": num_val, "test": num_test}
        self.seed = seed
        self.family = family
        for name, count in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if count < 0:
                raise ValueError(f"{name} must be >= 0, got {count}")
        # validates size, seed and family now rather than in setup
        self.class_names = list(SyntheticScenes(0, size, seed, family=family).class_names)

    def make_dataset(self, split: str) -> Dataset:
        scenes = SyntheticScenes(self.counts[split], self.size, self.seed, split, self.family)
        return _InMemory(scenes)


class VOCDataModule(SegmentationDataModule):
    """PASCAL VOC 2012 (+ SBD ``train_aug``) or any dataset in the VOC layout, from disk.

    Args:
        root: the VOC2012 folder or a VOCdevkit holding it (see
            :class:`~dcsm_lightning.data.voc.VOCSegmentation`).
        class_names: K names in label order; None: ``root/class_names.txt`` if present, else
            the 20 VOC classes.
        size: letterbox side S (the paper: 500).
        batch_size, num_workers, pin_memory, hflip: see :class:`SegmentationDataModule`.
        train_split, val_split, test_split, predict_split: names of lists in
            ``ImageSets/Segmentation``; test / predict default to ``val_split``. A split
            without masks (e.g. VOC ``test``) yields batches without ``mask``.
        train_mask_root: train on these masks (pseudo-labels), see
            :class:`SegmentationDataModule`.
    """

    def __init__(
        self,
        root: str,
        class_names: list[str] | None = None,
        size: int = 500,
        batch_size: int = 2,
        num_workers: int = 0,
        pin_memory: bool = False,
        hflip: bool = True,
        train_split: str = "train_aug",
        val_split: str = "val",
        test_split: str | None = None,
        predict_split: str | None = None,
        train_mask_root: str | None = None,
    ) -> None:
        super().__init__(
            size,
            batch_size,
            num_workers,
            pin_memory,
            hflip,
            train_split=train_split,
            val_split=val_split,
            test_split=test_split,
            predict_split=predict_split,
            train_mask_root=train_mask_root,
        )
        self.root = root
        self.class_names = list(resolve_class_names(root, class_names))
        # Save the names in use, not None: the model gets them (linked by the CLI), and
        # Lightning refuses a datamodule and a model whose shared hyper-parameters differ.
        self.save_hyperparameters()
        self.save_hyperparameters({**self.hparams, "class_names": self.class_names})

    def make_dataset(self, split: str) -> Dataset:
        return VOCSegmentation(self.root, split, class_names=self.class_names)
