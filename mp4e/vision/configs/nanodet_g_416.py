# MMDetection config for the NanoDet model converted from TensorFlow.js by
# scripts/convert_nanodet.py (modules in mp4e.vision.nanodet). Inference only.
#
# The input is resized to 416x416 without keeping the aspect ratio and normalised with
# NanoDet's training statistics (BGR order, 0..255 scale). Detections are mapped back to
# original image pixels through the resize's scale factor.

default_scope = "mmdet"
custom_imports = dict(imports=["mp4e.vision.nanodet"], allow_failed_imports=False)

input_size = (416, 416)

model = dict(
    type="SingleStageDetector",
    data_preprocessor=dict(
        type="DetDataPreprocessor",
        mean=[103.53, 116.28, 123.675],
        std=[57.375, 57.12, 58.395],
        bgr_to_rgb=False,
        pad_size_divisor=32,
    ),
    backbone=dict(
        type="NanoDetCspNet",
        stem_channels=32,
        stages=[(32, 1, 1), (64, 2, 2), (128, 2, 2), (256, 3, 2)],
        out_indices=(1, 2, 3),
        negative_slope=0.1,
    ),
    neck=dict(type="NanoDetPAN", in_channels=[128, 256, 512], out_channels=128),
    bbox_head=dict(
        type="NanoDetHead",
        num_classes=80,
        in_channels=128,
        feat_channels=128,
        stacked_convs=1,
        reg_max=10,
        strides=[8, 16, 32],
        negative_slope=0.1,
    ),
    test_cfg=dict(
        nms_pre=1000,
        score_thr=0.05,
        nms=dict(type="nms", iou_threshold=0.6),
        max_per_img=100,
    ),
)

test_pipeline = [
    dict(type="LoadImageFromFile", backend_args=None),
    dict(type="Resize", scale=input_size, keep_ratio=False),
    dict(
        type="PackDetInputs",
        meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"),
    ),
]

test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    dataset=dict(type="CocoDataset", test_mode=True, pipeline=test_pipeline),
)
