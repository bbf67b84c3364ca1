"""Default configuration: every key of the reference implementation plus this project's additions.

Sizes are written [width, height]. Sequences are stored as tuples so that a frozen config is
immutable all the way down (a YAML list or a command-line list is converted on merge).

MODEL.EXTRA holds the architecture-specific keys and comes in two templates:
``resnet_extra()`` (SimpleBaseline deconv head, the default) and ``hrnet_extra()`` (HRNet stages,
W32 values). The reference replaces EXTRA wholesale with whatever a YAML file gives, so an HRNet
file's EXTRA has no NUM_LAYERS and a ResNet file's EXTRA has no STAGE keys. Here a YAML's EXTRA is
merged into one template, chosen by its content (STAGE2 -> HRNet, NUM_LAYERS -> ResNet, neither ->
the architecture named by MODEL.NAME / MODEL.BACKBONE). That gives the same key sets as the
reference while still rejecting misspelt keys inside EXTRA and filling omitted ones with defaults.
"""
from __future__ import annotations

from yacs.config import CfgNode as CN


def resnet_extra() -> CN:
    """MODEL.EXTRA template for ResNet backbones with the deconvolution head."""
    e = CN()
    e.NUM_LAYERS = 50  # ResNet depth: 18/34 BasicBlock, 50/101/152 Bottleneck
    e.BASE_WIDTH = 64  # stem/first-stage channels (stages: x1, x2, x4, x8); 64 = the ImageNet net
    e.DECONV_WITH_BIAS = False  # bias in the transposed convolutions of the head
    e.NUM_DECONV_LAYERS = 3  # number of 2x upsampling transposed convolutions
    e.NUM_DECONV_FILTERS = (256, 256, 256)  # output channels of each transposed convolution
    e.NUM_DECONV_KERNELS = (4, 4, 4)  # kernel size of each transposed convolution (2, 3 or 4)
    e.FINAL_CONV_KERNEL = 1  # kernel of the final heatmap conv (padding 1 if 3, else 0)
    e.TARGET_TYPE = "gaussian"  # heatmap target kind; only 'gaussian' exists
    e.HEATMAP_SIZE = (64, 64)  # target heatmap [w, h]; an int v in YAML means [v, v]
    e.SIGMA = 2.0  # Gaussian std of the target, in heatmap pixels
    return e


def _hrnet_stage(num_modules: int, num_branches: int, base: int = 32) -> CN:
    s = CN()
    s.NUM_MODULES = num_modules  # repeated high-resolution modules in this stage
    s.NUM_BRANCHES = num_branches  # parallel resolutions in this stage
    s.NUM_BLOCKS = (4,) * num_branches  # residual blocks per branch
    s.NUM_CHANNELS = tuple(base * 2 ** i for i in range(num_branches))  # width per branch
    s.BLOCK = "BASIC"  # block type per branch: BASIC or BOTTLENECK
    s.FUSE_METHOD = "SUM"  # how branches are fused; only SUM exists
    return s


def hrnet_extra() -> CN:
    """MODEL.EXTRA template for HRNet (the reference's W32 defaults: 1 module per stage)."""
    e = CN()
    e.PRETRAINED_LAYERS = ("*",)  # top-level module names taken from the ImageNet file; '*' = all
    e.STEM_INPLANES = 64  # stem width (declared by the reference, not read by it)
    e.FINAL_CONV_KERNEL = 1  # kernel of the final heatmap conv
    e.STAGE2 = _hrnet_stage(1, 2)  # second stage: 2 branches
    e.STAGE3 = _hrnet_stage(1, 3)  # third stage: 3 branches
    e.STAGE4 = _hrnet_stage(1, 4)  # fourth stage: 4 branches
    e.TARGET_TYPE = "gaussian"  # heatmap target kind; only 'gaussian' exists
    e.HEATMAP_SIZE = (64, 64)  # target heatmap [w, h]
    e.SIGMA = 2.0  # Gaussian std of the target, in heatmap pixels
    return e


_C = CN()
# ---- top level (reference) ----
# (Keys the reference declares but never reads are accepted and ignored: config/aliases.py LEGACY.)
_C.LOCAL_RANK = 0  # DDP rank (set by --local_rank); rank != 0 skips logging, evaluation and saving
_C.RAW_INPUT = False  # build the unlabeled dataset without augmentation
_C.SAVE_INTER = 0  # >0: also save a bare state dict every SAVE_INTER epochs
_C.OUTPUT_DIR = ""  # root of run folders: OUTPUT_DIR/<TRAIN_DATASET>/<name>/<cfg name>/<run>
_C.RUN_NAME = ""  # run folder name; '' = run_<date-time>, a new one per training (latest -> newest)
_C.LOG_DIR = ""  # root of tensorboard folders
_C.DATA_DIR = ""  # prefix for data/model paths, applied by apply_dirs()
_C.GPUS = "0"  # comma-separated GPU ids
_C.WORKERS = 4  # DataLoader worker processes (train and val)
_C.PRINT_FREQ = 20  # log every N iterations (and the last one)
# ---- top level (project additions) ----
_C.SEED = 1314  # seed of every random generator of a run
_C.DEVICE = ""  # '' = cuda if available else cpu; or 'cpu', 'cuda', 'cuda:<i>'
_C.DIST_TIMEOUT_S = 900.0  # DDP: seconds a collective may wait for a stuck (stopped) rank before the job ends

# ---- semi-supervised methods: every option of their parts (methods/parts.py) ----
# The reference's top-level keys are accepted as aliases (config/aliases.py), e.g. MASK_JOINT_NUM
# sets SSL.HARD.JOINT_CUTOUT, so its experiment files load unchanged.
_C.SSL = CN()
_C.SSL.HARD = CN()  # the hard view of an unlabeled crop
_C.SSL.HARD.JOINT_CUTOUT = 0  # Joint Cutout boxes per unlabeled sample; 0 = off (alias MASK_JOINT_NUM)
_C.SSL.HARD.CUTOUT_MODE = "reference"  # 'reference': clamp swap and 24-channel draws; 'corrected': true bounds, supervised joints (alias CUTOUT_MODE)
_C.SSL.HARD.CUTOUT_SCALE = 1.0  # multiplies Joint Cutout's pixel sizes (box half sizes 10-19 px, jitter 10 px), made for 256x192 crops; e.g. 0.354 keeps their share of a 96x64 crop (alias CUTOUT_SCALE)
_C.SSL.HARD.RAND_AUG = False  # mixed datasets add a RandAugment twin of the unlabeled crop, the hard view's base (alias CONS_RAND_AUG)
_C.SSL.HARD.RAND_MAGNITUDE = 10  # RandAugment magnitude M of that twin, N fixed at 2 (alias RAND_MAGNITUDE)
_C.SSL.HARD.AFFINE = True  # random affine on the hard view and the teacher heatmaps, ranges DATASET.SCALE_FACTOR / ROT_FACTOR (alias UNSUP_TRANSFORM)
_C.SSL.HARD.ALIGN_CORNERS = False  # align_corners of affine_grid/grid_sample in that affine (alias HARD_AFFINE_ALIGN_CORNERS)
_C.SSL.HARD.TEACHER_VIEW = "easy"  # teacher input: 'easy' (reference: the plain crop) or 'hard' (own hard affine draw; the same-difficulty setting of the collapse study) (alias CONS_TEACHER_VIEW)
_C.SSL.CONS = CN()  # the consistency term
_C.SSL.CONS.WEIGHT = 1.0  # factor of the consistency loss; 1.0 = the reference
_C.SSL.CONS.RAMPUP_EPOCHS = 0.0  # the factor ramps up as exp(-5(1-t)^2) over this many epochs; 0 = reference (full from the start) (alias CONS_RAMPUP_EPOCHS)
_C.SSL.CONS.CONF_THRE = 0.0  # confidence mask: weight 0 for joints whose target peaks below this; 0 = off, the reference (alias CONS_CONF_THRE)
_C.SSL.DUAL_SUP_WEIGHT = 0.5  # pose_dual / pose_dual_mt: weight of each net's supervised loss; 0.5 = reference (supervised:consistency 1:2 per net), 1.0 = PoseCons' 1:1 (alias DUAL_SUP_WEIGHT)
_C.SSL.EMA_DECAY = 0.999  # mean_teacher / pose_dual_mt: teacher <- d * teacher + (1 - d) * student after each step, d = min(EMA_DECAY, 1 - 1/(step + 1)) (alias MT_EMA_DECAY)
_C.SSL.MULTI = CN()  # pose_multi (multi-path consistency)
_C.SSL.MULTI.PATHS = ("occlusion+cutout", "cutout+cutmix")  # one hard view per entry, '+'-joined ops applied in order before the hard affine: cutout, occlusion (joint cut-occlusion), cutmix, mixup, none (alias MULTI.PATHS)
_C.SSL.MULTI.MASK_JOINT_NUM = 5  # boxes per cutout / occlusion op (alias MULTI.MASK_JOINT_NUM)
_C.SSL.MULTIAUGS = CN()  # multiaugs / multiaugs_dual (MultiAugs as released: one shared hard affine, one student pass per path)
_C.SSL.MULTIAUGS.PATHS = ("jc", "jo", "joco", "jccm")  # one hard view per entry, '+'-joined ops: jc (Joint Cutout), jo (keypoint cut-occlusion), co (cutout), cm (hole cutmix), mu (mixup), joco, jccm; the reported COCO runs' four
_C.SSL.MULTIAUGS.JC = 5  # Joint Cutout boxes of jc and of jccm's first half
_C.SSL.MULTIAUGS.JO = 2  # keypoint cut-occlusion pastes of jo and joco
_C.SSL.MULTIAUGS.CO = 5  # cutout holes of co and joco
_C.SSL.MULTIAUGS.CM = 2  # cutmix holes of cm
_C.SSL.MULTIAUGS.JCCM_CM = -1  # cutmix holes inside jccm; -1 = as released: CM (2) for multiaugs, CO (5) for multiaugs_dual
_C.SSL.MULTIAUGS.OP_MODE = "reference"  # 'reference': the released ops' geometry, axis quirks included; 'corrected': true image geometry
_C.SSL.MULTIAUGS.CONCAT = False  # True: one student pass over all paths concatenated (BatchNorm sees them together); False = released (one pass per path)

_C.SSL.SSPCM = CN()  # sspcm (SSPCM as released: teachers teacher1/teacher2 cross-teach, net1 is the student taught by their time-corrected ensemble)
_C.SSL.SSPCM.JO = 2  # keypoint cut-occlusion pastes per hard view (keypoint_perception_cutmix_num); 0 = Joint Cutout with SSL.HARD.JOINT_CUTOUT boxes instead (none if that is 0 too)
_C.SSL.SSPCM.OP_MODE = "reference"  # cut-occlusion geometry: 'reference' (the released axis quirks) or 'corrected'
_C.SSL.SSPCM.TIME_CORRECTION = True  # the student's target: per joint the closest-agreeing pair of current / previous-epoch teachers (uncertainty_and_time_correction); False = (t_A + t_B) / 2
_C.SSL.SSPCM.WARMUP_EPOCH = 0  # the correction is active in epochs (0-based) above this (time_correction_warmup_epoch)
_C.SSL.SSPCM.SCORE_FILTER = True  # weight 0 for joints whose mean teacher maximum (m_A + m_B) / 2 is not above SCORE_THRE (score_filter; released configs: on)
_C.SSL.SSPCM.SCORE_THRE = 0.1  # threshold of the score filter (score_filter_thread)
_C.SSL.SSPCM.DIST_FILTER = False  # the student's joints whose teachers' argmaxes lie DIST_THRE or more of the heatmap diagonal apart get weight 0 (kp_pixel_dist_filter; released: off)
_C.SSL.SSPCM.DIST_THRE = 0.6  # threshold of the distance filter, a fraction of the heatmap diagonal (kp_pixel_dist_filter_thread of the released configs; its default 150 never filters)
_C.SSL.SSPCM.SCORE_REWEIGHT = False  # multiply the weights by clip(1 - |m_A - m_B|, 0, 1) (score_diff_reweight)
_C.SSL.SSPCM.DIST_REWEIGHT = False  # multiply the student's weights by 1 - distance / diagonal (kp_pixel_dist_diff_reweight)
_C.SSL.SSPCM.BOTH_SATISFY = False  # with both filters on: keep a joint if EITHER filter keeps it, for all three terms (kp_dist_and_score_both_satisfy; an OR, as released)

_C.CUDNN = CN()
_C.CUDNN.BENCHMARK = False  # torch.backends.cudnn.benchmark
_C.CUDNN.DETERMINISTIC = False  # torch.backends.cudnn.deterministic
_C.CUDNN.ENABLED = True  # torch.backends.cudnn.enabled

_C.MODEL = CN()
_C.MODEL.NAME = "pose_resnet"  # pose_resnet, pose_hrnet (supervised), pose_cons, pose_dual (semi-supervised)
_C.MODEL.BACKBONE = "resnet"  # pose_cons/pose_dual backbone: resnet or hrnet
_C.MODEL.PRM = False  # pose_resnet/pose_hrnet: PRM attention block before the final conv
_C.MODEL.INIT_WEIGHTS = True  # initialise from MODEL.PRETRAINED when training ('' = random init)
_C.MODEL.PRETRAINED = ""  # ImageNet (or dual) initialisation file
_C.MODEL.NUM_JOINTS = 16  # heatmap channels (24 = union space in every semi-supervised config); 0 = the description's joint count (custom datasets)
_C.MODEL.IMAGE_SIZE = (256, 256)  # network input [w, h]; an int v in YAML means [v, v]
_C.MODEL.GROUPS = 1  # pose_resnet: Bottleneck groups (ResNeXt style)
_C.MODEL.WIDTH_PER_GROUP = 64  # pose_resnet: Bottleneck width per group
_C.MODEL.STYLE = "pytorch"  # 'pytorch' (stride on the 3x3) or 'caffe' (stride on the first 1x1)
_C.MODEL.EXTRA = resnet_extra()  # architecture keys; see the module docstring for how YAML merges

_C.LOSS = CN()
_C.LOSS.USE_TARGET_WEIGHT = True  # JointsMSELoss multiplies prediction and target by the joint weight

_C.DATASET = CN()
_C.DATASET.ROOT = ""  # data root ('data/' in the experiment files)
_C.DATASET.TRAIN_DATASET = "mpii"  # coco, mpii, ai_challenger, mix_coco_coco, mix_mpii_ai, custom (labeled only), mix_custom (labeled + DATASET.UNLABELED)
_C.DATASET.TEST_DATASET = "mpii"  # coco, mpii, ai_challenger, custom
_C.DATASET.JOINT_SPACE = ""  # joints the nets predict: union, coco, mpii, aic or a dataset description .yaml; '' = a custom dataset's description, else the union for MODEL.NUM_JOINTS 24, else the dataset's own joints
_C.DATASET.DESCRIPTION = ""  # custom datasets: the dataset description .yaml (joints, flip pairs, skeleton, sigmas); '' = <DATASET.ROOT>/dataset.yaml
_C.DATASET.UNLABELED = ""  # custom datasets: the unlabeled set, a folder of videos (mp4/avi/mov) or of images (relative to DATASET.ROOT or absolute); '' = the labeled train images
_C.DATASET.UNLABELED_EVERY = 10  # videos: keep every k-th frame
_C.DATASET.UNLABELED_PER_VIDEO = 0  # videos: >0 keeps this many frames spread evenly over each video instead of every k-th
_C.DATASET.UNLABELED_BOXES = ""  # unlabeled boxes: '' = the whole frame, or a detection json (COCO results format: image file_name or id, bbox, score)
_C.DATASET.UNLABELED_CACHE = ""  # where decoded video frames are cached as JPEG (relative to DATASET.ROOT or absolute); '' = <DATASET.UNLABELED>/.frames_cache (a read-only video folder needs one)
_C.DATASET.TRAIN_SET = "train"  # training image set (COCO: 'train' -> train2017)
_C.DATASET.TEST_SET = "valid"  # evaluation image set (COCO: 'val'/'validation' -> val2017)
_C.DATASET.TRAIN_UNSUP_SET = ""  # mix_coco_coco unlabeled image set; '' = TRAIN_SET
_C.DATASET.DATA_FORMAT = "jpg"  # 'jpg' files or 'zip' archives (<folder>.zip@/<folder>/<file>)
_C.DATASET.HYBRID_JOINTS_TYPE = ""  # only appended to the dataset part of the run folder name
_C.DATASET.SELECT_DATA = False  # drop training boxes whose joints stray from the box centre
_C.DATASET.TRAIN_LEN = -1  # >0: keep the first N labeled training person instances
_C.DATASET.COLOR_RGB = False  # convert decoded BGR images to RGB (False everywhere: nets see BGR)
_C.DATASET.PROB_HALF_BODY = 0.0  # probability of a half-body crop (0 = never)
_C.DATASET.NUM_JOINTS_HALF_BODY = 8  # minimum visible joints for a half-body crop
_C.DATASET.FLIP = True  # random horizontal flip with probability 0.5
_C.DATASET.SCALE_FACTOR = 0.25  # scale augmentation range (dataset and hard-view affine)
_C.DATASET.ROT_FACTOR = 30  # rotation augmentation std in degrees (dataset and hard-view affine)
_C.DATASET.SKIP_BAD_IMAGES = False  # skip unreadable images with a warning instead of failing
_C.DATASET.DEVICE_PIPELINE = False  # decode+warp+targets of training crops on DEVICE (JPEG only)

_C.TRAIN = CN()
_C.TRAIN.LR_FACTOR = 0.1  # MultiStepLR gamma
_C.TRAIN.LR_STEP = (90, 110)  # MultiStepLR milestones (epochs)
_C.TRAIN.LR = 0.001  # base learning rate
_C.TRAIN.OPTIMIZER = "adam"  # 'adam' (torch defaults, no weight decay) or 'sgd'
_C.TRAIN.ADAM_IMPL = "auto"  # Adam kernels: 'for_loop' (the reference's per-tensor loop), 'foreach', 'fused' (one kernel, skips a non-finite step on the device); 'auto' = fused on CUDA, for_loop elsewhere. Same update up to float rounding
_C.TRAIN.MOMENTUM = 0.9  # SGD momentum
_C.TRAIN.WD = 0.0001  # SGD weight decay
_C.TRAIN.NESTEROV = False  # SGD Nesterov momentum
_C.TRAIN.BEGIN_EPOCH = 0  # first epoch
_C.TRAIN.END_EPOCH = 140  # epochs run: BEGIN_EPOCH .. END_EPOCH-1
_C.TRAIN.RESUME = True  # continue the latest run (or RUN_NAME) from its checkpoint.pth.tar if present; else a new run
_C.TRAIN.BATCH_SIZE = 32  # per-GPU batch (of labeled/unlabeled pairs for mixed datasets)
_C.TRAIN.AMP = ""  # mixed precision: '' (off), 'bf16' or 'fp16'
_C.TRAIN.CHANNELS_LAST = False  # channels-last memory format for nets and batches
_C.TRAIN.COMPILE = ""  # torch.compile mode: '' off, 'default', 'reduce-overhead' (CUDA graphs), 'max-autotune'; True/False read as 'default'/''
_C.TRAIN.COMPILE_SCOPE = "nets"  # what TRAIN.COMPILE compiles: 'nets' (each net; the method step stays eager) or 'step' (the whole training step as one graph, hard view and losses included; its random draws are replayed, so a seed gives the same draws)
_C.TRAIN.SYNC_BN = False  # SyncBatchNorm under DDP
_C.TRAIN.HOOKS = ()  # extra hooks of the loop by registered name (engine/hooks.py @register_hook), after the default ones
_C.TRAIN.STOP_ON_NONFINITE = True  # stop with an error when a loss becomes NaN/inf

_C.TEST = CN()
_C.TEST.BATCH_SIZE = 32  # per-GPU evaluation batch
_C.TEST.INTERVAL = 1  # validate every N epochs (and after the last)
_C.TEST.FLIP_TEST = False  # average with the prediction on the flipped image
_C.TEST.POST_PROCESS = True  # sub-pixel refinement of heatmap maxima
_C.TEST.SHIFT_HEATMAP = True  # flip test: shift the flipped heatmap 1 px (else 0.75 px by resampling)
_C.TEST.POST_TYPE = "shift"  # refinement: 'shift' (quarter offset) or 'dark' (Taylor expansion)
_C.TEST.USE_GT_BBOX = False  # COCO evaluation on GT boxes (else TEST.COCO_BBOX_FILE detections)
_C.TEST.OKS_THRE = 0.5  # OKS-NMS threshold
_C.TEST.IN_VIS_THRE = 0.0  # joints above this confidence enter the rescoring mean
_C.TEST.COCO_BBOX_FILE = ""  # detection JSON for COCO val-with-detections and for unlabeled2017
_C.TEST.MODEL_FILE = ""  # weights to evaluate; '' = <run folder>/final_state.pth.tar
_C.TEST.IMAGE_THRE = 0.0  # detection boxes scoring below this are dropped
_C.TEST.SAVE_RESULT = True  # write the keypoint result JSON
_C.TEST.BEST_METRIC = "net1"  # checkpoint selection metric: a validation row of the method (net1, net2, ensemble, teacher...)

_C.DEBUG = CN()
_C.DEBUG.DEBUG = False  # enable the debug image dumps below
_C.DEBUG.SAVE_BATCH_IMAGES_GT = False  # dump batch images with GT joints
_C.DEBUG.SAVE_BATCH_IMAGES_PRED = False  # dump batch images with predicted joints
_C.DEBUG.SAVE_HEATMAPS_GT = False  # dump GT heatmaps
_C.DEBUG.SAVE_HEATMAPS_PRED = False  # dump predicted heatmaps

_C.MONITOR = CN()
_C.MONITOR.ENABLED = True  # track teacher-confidence statistics on a fixed unlabeled sample
_C.MONITOR.NUM_SAMPLES = 64  # size of that fixed sample
_C.MONITOR.LOW_MAX_THRE = 0.1  # a heatmap maximum below this counts as a low-confidence joint
_C.MONITOR.WARN_RISE = 0.2  # warn when the low-confidence fraction rises by more than this

_C.SYNTHETIC = CN()
_C.SYNTHETIC.GENERATE_IF_MISSING = False  # create the synthetic dataset under DATASET.ROOT if absent
_C.SYNTHETIC.SEED = 0  # generator seed of the synthetic dataset
_C.SYNTHETIC.PRESET = "standard"  # scene kind: 'standard' or 'light' (smaller images, less clutter)
_C.SYNTHETIC.NUM_TRAIN = 2000  # synthetic train2017 images
_C.SYNTHETIC.NUM_VAL = 200  # synthetic val2017 images
_C.SYNTHETIC.NUM_UNLABELED = 2000  # synthetic unlabeled2017 images (with detection file)


def get_defaults() -> CN:
    """A fresh, unfrozen copy of the defaults (ResNet EXTRA)."""
    return _C.clone()
