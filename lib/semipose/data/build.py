"""Dataset names (DATASET.TRAIN_DATASET / TEST_DATASET) -> torch datasets built from a config.

Registered here: coco, mix_coco_coco, mpii, ai_challenger, mix_mpii_ai, and custom / mix_custom
(any skeleton in a converted folder, data/custom.py). A new dataset
registers its builders (``fn(cfg) -> Dataset``) with::

    register_train_dataset("name", build_name_train)
    register_val_dataset("name", build_name_val)

Record sources (CocoDataset, MpiiDataset, AicDataset) share one shape: ``records``,
``joint_set`` (model space), ``native_joint_set``, ``flip_pairs``, ``image_set`` plus their
evaluation inputs; ``wrap_records`` turns any of them into a PoseDataset.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

from torch.utils.data import Dataset
from yacs.config import CfgNode

from semipose.data.coco import CocoDataset
from semipose.data.dataset import PoseDataset
from semipose.data.keypoints import JointSet, slots_in
from semipose.data.paired import PairedDataset
from semipose.errors import ConfigLookupError
from semipose.transforms.codec import Codec
from semipose.transforms.device_pipeline import PlanTransform
from semipose.transforms.randaugment import RandAugment
from semipose.transforms.sample import SampleTransform
from semipose.types import RecordSource

DatasetBuilder = Callable[..., Dataset]
TRAIN_DATASETS: Dict[str, DatasetBuilder] = {}
VAL_DATASETS: Dict[str, DatasetBuilder] = {}


def register_train_dataset(name: str, builder: DatasetBuilder) -> None:
    TRAIN_DATASETS[name] = builder


def register_val_dataset(name: str, builder: DatasetBuilder) -> None:
    VAL_DATASETS[name] = builder


def _lookup(table: Dict[str, DatasetBuilder], name: str, key: str) -> DatasetBuilder:
    if name not in table:
        raise ConfigLookupError(f"{key} '{name}' is unknown; available: {sorted(table)}")
    return table[name]


def build_train_dataset(cfg: CfgNode) -> Dataset:
    """The training dataset named by DATASET.TRAIN_DATASET (PoseDataset or PairedDataset)."""
    return _lookup(TRAIN_DATASETS, cfg.DATASET.TRAIN_DATASET, "DATASET.TRAIN_DATASET")(cfg)


def build_val_dataset(cfg: CfgNode) -> PoseDataset:
    """The validation dataset named by DATASET.TEST_DATASET (non-augmenting PoseDataset).

    Exposes ``records``, ``joint_set``, ``native_joint_set``, ``image_set``,
    ``annotation_file`` and, under ``source``, the dataset's other evaluation inputs (COCO:
    ``image_ids``, ``coco_api()``; MPII: ``gt_file``; AIC: ``gt_npy_file``).
    """
    return _lookup(VAL_DATASETS, cfg.DATASET.TEST_DATASET, "DATASET.TEST_DATASET")(cfg)


# ---------------------------------------------------------------------------------- helpers
def wrap_records(cfg: CfgNode, source: RecordSource, is_train: bool,
                 allow_half_body: bool = True, codec: Optional[Codec] = None) -> PoseDataset:
    """PoseDataset over ``source.records`` with the config's sample pipeline.

    ``source`` needs ``records``, ``flip_pairs`` and ``joint_set`` (model space). Training sets
    under DATASET.DEVICE_PIPELINE yield plans that the trainer finishes on its device.
    ``codec`` makes the targets (default: ``Codec.from_cfg(cfg)``).
    """
    kind = PlanTransform if is_train and cfg.DATASET.DEVICE_PIPELINE else SampleTransform
    transform = kind.from_cfg(cfg, is_train, source.flip_pairs, joint_set=source.joint_set,
                              allow_half_body=allow_half_body,
                              codec=Codec.from_cfg(cfg) if codec is None else codec)
    return PoseDataset(source.records, transform, is_train, seed=int(cfg.SEED),
                       skip_bad_images=bool(cfg.DATASET.SKIP_BAD_IMAGES), source=source)


def labeled_joint_ids(model_set: JointSet, labeled_native: JointSet):
    """Model-space ids of the joints the labeled dataset annotates (unlabeled weight mask)."""
    idx = slots_in(model_set, labeled_native)
    return sorted(int(i) for i in idx[idx >= 0])


def build_pair(cfg: CfgNode, labeled: PoseDataset, unlabeled: PoseDataset,
               labeled_native: JointSet) -> PairedDataset:
    """Pair two PoseDatasets per the config (SSL.HARD.RAND_AUG -> a RandAugment(2,
    SSL.HARD.RAND_MAGNITUDE) twin of each unlabeled crop)."""
    rand_aug: Optional[RandAugment] = None
    if cfg.SSL.HARD.RAND_AUG:
        rand_aug = RandAugment(2, cfg.SSL.HARD.RAND_MAGNITUDE)
    ids = labeled_joint_ids(labeled.joint_set, labeled_native)
    return PairedDataset(labeled, unlabeled, ids, rand_aug=rand_aug, seed=int(cfg.SEED))


# ---------------------------------------------------------------------------------- COCO
def build_coco_train(cfg: CfgNode) -> PoseDataset:
    source = CocoDataset.from_cfg(cfg, cfg.DATASET.TRAIN_SET, is_train=True)
    return wrap_records(cfg, source, is_train=True)


def build_coco_val(cfg: CfgNode) -> PoseDataset:
    source = CocoDataset.from_cfg(cfg, cfg.DATASET.TEST_SET, is_train=False)
    return wrap_records(cfg, source, is_train=False)


def build_mix_coco_coco(cfg: CfgNode) -> PairedDataset:
    """Labeled COCO (TRAIN_LEN applied) + unlabeled COCO (TRAIN_UNSUP_SET or TRAIN_SET, all of it).

    RAW_INPUT builds the unlabeled side without augmentation. TRAIN_LEN is passed explicitly
    rather than reset in the config.
    """
    labeled_src = CocoDataset.from_cfg(cfg, cfg.DATASET.TRAIN_SET, is_train=True)
    unsup_set = cfg.DATASET.TRAIN_UNSUP_SET or cfg.DATASET.TRAIN_SET
    u_train = not cfg.RAW_INPUT
    unlabeled_src = CocoDataset.from_cfg(cfg, unsup_set, is_train=u_train, train_len=0)
    codec = Codec.from_cfg(cfg)  # one codec for both sides
    labeled = wrap_records(cfg, labeled_src, is_train=True, codec=codec)
    unlabeled = wrap_records(cfg, unlabeled_src, is_train=u_train,
                             allow_half_body="unlabel" not in unlabeled_src.image_set,
                             codec=codec)
    return build_pair(cfg, labeled, unlabeled, labeled_src.native_joint_set)


# ---------------------------------------------------------------------------------- MPII / AIC
# Imported inside the builders so a COCO run never depends on these modules.
def _mpii(cfg: CfgNode, image_set: str, is_train: bool):
    from semipose.data.mpii import MpiiDataset
    return MpiiDataset.from_cfg(cfg, image_set, is_train)


def _aic(cfg: CfgNode, image_set: str, is_train: bool):
    from semipose.data.aic import AicDataset
    return AicDataset.from_cfg(cfg, image_set, is_train)


def build_mix_mpii_ai(cfg: CfgNode) -> PairedDataset:
    """Labeled MPII (TRAIN_SET) + unlabeled AI Challenger (TRAIN_SET).

    The reference draws the labeled partner per item; here it is drawn per epoch, which is the
    same distribution (uniform, with replacement) and reproducible.
    """
    labeled_src = _mpii(cfg, cfg.DATASET.TRAIN_SET, True)
    u_train = not cfg.RAW_INPUT
    unlabeled_src = _aic(cfg, cfg.DATASET.TRAIN_SET, u_train)
    codec = Codec.from_cfg(cfg)  # one codec for both sides
    return build_pair(cfg, wrap_records(cfg, labeled_src, True, codec=codec),
                      wrap_records(cfg, unlabeled_src, u_train, codec=codec),
                      labeled_src.native_joint_set)


def build_mpii_train(cfg: CfgNode) -> PoseDataset:
    return wrap_records(cfg, _mpii(cfg, cfg.DATASET.TRAIN_SET, True), is_train=True)


def build_mpii_val(cfg: CfgNode) -> PoseDataset:
    return wrap_records(cfg, _mpii(cfg, cfg.DATASET.TEST_SET, False), is_train=False)


def build_aic_train(cfg: CfgNode) -> PoseDataset:
    return wrap_records(cfg, _aic(cfg, cfg.DATASET.TRAIN_SET, True), is_train=True)


def build_aic_val(cfg: CfgNode) -> PoseDataset:
    return wrap_records(cfg, _aic(cfg, cfg.DATASET.TEST_SET, False), is_train=False)


# ---------------------------------------------------------------------------------- custom
def _custom(cfg: CfgNode, image_set: str, is_train: bool):
    from semipose.data.custom import CustomDataset
    return CustomDataset.from_cfg(cfg, image_set, is_train)


def build_custom_train(cfg: CfgNode) -> PoseDataset:
    """The labeled train set of a custom folder (supervised training)."""
    return wrap_records(cfg, _custom(cfg, cfg.DATASET.TRAIN_SET, True), is_train=True)


def build_custom_val(cfg: CfgNode) -> PoseDataset:
    return wrap_records(cfg, _custom(cfg, cfg.DATASET.TEST_SET, False), is_train=False)


def build_mix_custom(cfg: CfgNode) -> PairedDataset:
    """Labeled custom train set (TRAIN_LEN applied) + unlabeled: DATASET.UNLABELED's frames or
    images, or every labeled train person with its labels hidden; paired as mix_coco_coco (an
    epoch walks the unlabeled set). RAW_INPUT builds the unlabeled side without augmentation;
    it never gets half-body crops (it has no joints)."""
    from semipose.data.custom import unlabeled_set
    labeled_src = _custom(cfg, cfg.DATASET.TRAIN_SET, True)
    unlabeled_src = unlabeled_set(cfg, labeled_src)
    u_train = not cfg.RAW_INPUT
    codec = Codec.from_cfg(cfg)  # one codec for both sides
    labeled = wrap_records(cfg, labeled_src, is_train=True, codec=codec)
    unlabeled = wrap_records(cfg, unlabeled_src, is_train=u_train, allow_half_body=False,
                             codec=codec)
    return build_pair(cfg, labeled, unlabeled, labeled_src.native_joint_set)


register_train_dataset("coco", build_coco_train)
register_train_dataset("mix_coco_coco", build_mix_coco_coco)
register_val_dataset("coco", build_coco_val)
register_train_dataset("mpii", build_mpii_train)
register_val_dataset("mpii", build_mpii_val)
register_train_dataset("ai_challenger", build_aic_train)
register_val_dataset("ai_challenger", build_aic_val)
register_train_dataset("mix_mpii_ai", build_mix_mpii_ai)
register_train_dataset("custom", build_custom_train)
register_train_dataset("mix_custom", build_mix_custom)
register_val_dataset("custom", build_custom_val)
