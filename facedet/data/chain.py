"""The dataset wrapper chain: a training set is a ``FaceDataset`` wrapped by mosaic and mixup
(``DatasetWrapper``), then by the loader's ``BatchSeeded``; each wrapper holds the next one down as
``dataset``. ``iter_dataset_chain`` is the one walk down that chain: seeding, finding the wrappers
and reaching the records all go through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import Dataset, Subset


class WrapsDataset(Dataset):
    """A dataset that wraps another: ``dataset``, the next one down the chain."""

    dataset: Dataset


def iter_dataset_chain(dataset: Any) -> Iterator[Any]:
    """``dataset`` and every dataset below it, outermost first (through ``WrapsDataset.dataset`` and
    torch's ``Subset.dataset``); the last one is the dataset that reads the images."""
    while True:
        yield dataset
        if not isinstance(dataset, (WrapsDataset, Subset)):
            return
        dataset = dataset.dataset


def innermost_dataset(dataset: Any) -> Any:
    """The dataset at the bottom of ``dataset``'s chain (the ``FaceDataset`` that holds the records)."""
    *_, last = iter_dataset_chain(dataset)
    return last
