"""The Predict page (pages/draw.py for datasets that are not digits): a photo in, what the model sees, why.

A photo (uploaded, or taken with the camera) is made into the model's input exactly as the
image-folder import made the training images (`lrcore.photo.decode_photo`: EXIF rotation,
shorter side resized to the model's side, centre-cropped, grey or colour), so its shape is
always the model's. A random test image is the other input.
"""
from __future__ import annotations


import numpy as np
import streamlit as st
import torch
from PIL import Image

from lrcore import datasets
from lrcore.data import DatasetUnavailable
from lrcore.evaluate import contributions, predict
from lrcore.preprocess import MAX_BYTES, ImageError
from ui import common, maps
from ui.images import picture
from ui.text import md_escape
from ui.verdict import shown, verdict

SOURCES = [":material/upload: Upload a photo", ":material/photo_camera: Take a photo",
           ":material/casino: Random test image"]
INPUT_WIDTH = 300  # px of the input column (the uploaded photo is shown this wide)
PREVIEW_SIDE = 192  # the model's input blown up, nearest neighbour so every pixel shows
MAP_COLUMNS = 5


def preview(image: torch.Tensor) -> Image.Image:
    """A uint8 H x W or 3 x H x W picture as a PIL image, blown up with crisp pixels."""
    return picture(image, max(1, PREVIEW_SIDE // image.shape[-1]))


def photo_from(file, shape: tuple[int, int, int]) -> torch.Tensor | None:
    """The uploaded or camera file made into the model's input, or None after saying why it can't be."""
    from lrcore.photo import decode_photo  # A's module: decoding shared with the image-folder import

    channels, side, _ = shape
    try:
        return decode_photo(file.getvalue(), side, colour=channels == 3)
    except ImageError as error:
        st.error(f"Can't use “{md_escape(file.name)}”: {md_escape(error)}. Use a PNG or JPEG photo, up to "
                 f"{MAX_BYTES // 2**20} MB.")
        return None


def random_test_image(model: common.ModelInUse) -> tuple[torch.Tensor | None, int | None]:
    """A random test image of the model's dataset and its label, or (None, None) when the dataset is missing."""
    st.button("Another random test image", icon=":material/casino:", key="predict_another",
              on_click=lambda: st.session_state.update(predict_seed=int(np.random.default_rng().integers(2**31))))
    try:
        dataset = common.get_dataset(model.dataset)
    except DatasetUnavailable as error:
        st.error(f"The model's dataset is not available here, so there are no test images to show: "
                 f"{md_escape(error)}. Upload a photo instead.")
        return None, None
    if st.session_state.get("predict_seed") is None:
        st.session_state.predict_seed = int(np.random.default_rng().integers(2**31))
    index = st.session_state.predict_seed % len(dataset.test_labels)
    st.caption(f"Test image #{index:,} of the {len(dataset.test_labels):,} test images: the model never trained on it.")
    return dataset.images("test", deskew=common.current_model_config().deskew)[index], int(dataset.test_labels[index])


def photo_input(model: common.ModelInUse, shape: tuple[int, int, int]) -> tuple[torch.Tensor | None, int | None]:
    """The chosen input as the model's picture (and its label for a test image)."""
    # Test images come from the model's dataset: a checkpoint of an image folder this server never
    # imported has none, so it is offered photos only.
    sources = SOURCES if model.dataset in datasets.REGISTRY else SOURCES[:2]
    if st.session_state.get("predict_source") not in sources:
        st.session_state.predict_source = sources[0]
    source = st.radio("Input", sources, horizontal=True, key="predict_source", label_visibility="collapsed")
    if source == SOURCES[2]:
        return random_test_image(model)
    if source == SOURCES[0]:
        file = st.file_uploader(f"A photo: PNG or JPEG, up to {MAX_BYTES // 2**20} MB", type=["png", "jpg", "jpeg"],
                                key="predict_upload", max_upload_size=MAX_BYTES // 2**20)
    else:
        file = st.camera_input("Take a photo", key="predict_camera")
    if file is None:
        return None, None
    image = photo_from(file, shape)
    if image is not None and source == SOURCES[0]:
        st.image(file.getvalue(), width=INPUT_WIDTH, caption=md_escape(file.name))
    return image, None


def why(image: torch.Tensor, model: common.ModelInUse) -> None:
    """Weight x input, summed over the colour channels: one map per class (a binary model: its one map)."""
    names = model.class_names
    parts = contributions(model.model, model.normalizer, image)
    if parts.ndim == 4:  # rows x channels x H x W: a pixel's evidence is its three channels' together
        parts = parts.sum(1)
    bias = model.model.linear.bias.detach().cpu()
    limit = max(float(parts.abs().max()), 1e-6)  # one symmetric range: equal colours, equal amounts
    if len(parts) == 1:
        z = float(parts[0].sum() + bias[0])
        panels = [(f"**Evidence for “{shown(names[1])}”** (blue) **vs “{shown(names[0])}”** (red) · z = {z:.2f}",
                   parts[0])]
    else:
        panels = [(f"**{shown(name)}** · logit {float(part.sum() + b):.1f}", part)
                  for name, part, b in zip(names, parts, bias)]
    st.subheader("Why? Weight × input", anchor=False)
    columns = min(MAP_COLUMNS, len(panels)) if len(panels) > 1 else 2  # one map: half the width, not a wall
    for start in range(0, len(panels), columns):
        for column, (index, (title, panel)) in zip(st.columns(columns), enumerate(panels[start:start + columns], start)):
            with column:
                st.markdown(title)
                st.plotly_chart(maps.contribution_map(panel, limit), key=f"predict_map_{index}",
                                config={"displayModeBar": False})
    if len(parts) == 1:
        st.caption("Each pixel's evidence is its weight × its input, summed over the colour channels. z is the sum "
                   "of the map plus the bias; the probability of “" + shown(names[1]) + "” is sigmoid(z): blue "
                   "pixels push it up, red ones down.")
    else:
        st.caption("Each pixel's contribution is its weight × its input, summed over the colour channels. Blue "
                   "pixels push towards the class, red pixels away; a class's logit is the sum of its map plus its "
                   "bias, and the highest logit wins.")


def page(model: common.ModelInUse, shape: tuple[int, int, int]) -> None:
    """Input on the left, the prediction on the right (under it on a phone), then the maps."""
    with st.container(horizontal=True, gap="medium", key="predict_workspace"):
        left = st.container(width=INPUT_WIDTH + 20)
        right = st.container(width="stretch", key="predict_result")
    with left:
        image, true_label = photo_input(model, shape)
    if image is None:
        right.info("Upload a photo, take one, or pick a random test image: the model's prediction appears here.",
                   icon=":material/photo_camera:")
        return
    probabilities = predict(model.model, model.normalizer, image.unsqueeze(0))[0]
    channels, height, width = shape
    with right:
        verdict(probabilities, model.class_names, preview(image),
                f"The {height}×{width} {'colour' if channels == 3 else 'grey'} input, blown up: the photo's shorter "
                "side resized, then the middle cropped, as the training images were.", key="predict",
                width=PREVIEW_SIDE, true_label=true_label)
    why(image, model)
