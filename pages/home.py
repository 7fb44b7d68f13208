"""Home: what this dashboard is, where to start, and the tutorials' experiments one click away."""
import pandas  # noqa: F401  (before streamlit, plotly and ui: see ui/__init__.py)
import streamlit as st

from lrcore.naming import defaults_for
from ui import common

common.ensure_frame()  # first: a page opened alone reruns through dashboard.py

# The tutorials' exercises as ready-made settings: (title, what to look for, settings for Train).
EXPERIMENTS = [
    ("Learning rate too low", "lr 0.001: the loss creeps down; after 10 epochs the accuracy is still climbing.",
     {"learning_rate": 0.001}),
    # The dataset's own default. Measured on mnist-sample, 10 epochs: test accuracy 0.945 with lr 0.5
    # (0.918 without deskewing); lr 0.001 reaches 0.73. tests/test_page_home.py checks >= 0.9.
    ("Learning rate just right", "The default, lr 0.5 on digits: the loss falls fast, then levels off; over 90% "
     "test accuracy in 10 epochs.", {}),
    ("Learning rate too high", "SGD with lr 50: the loss blows up and the run stops with an explanation.",
     {"learning_rate": 50.0, "epochs": 5}),
    ("Small batches, as in tutorial 003", "500 images per digit, batch size 16: a noisy per-batch loss; watch "
     "its moving average.", {"batch_size": 16, "per_class_limit": 500, "learning_rate": 0.1, "epochs": 5}),
    ("A bigger validation set", "Hold out half the images: less to learn from, a steadier validation curve.",
     {"validation_fraction": 0.5}),
    ("Train on a small subset", "50 images per digit: training accuracy races ahead of validation "
     "(overfitting).", {"per_class_limit": 50, "epochs": 30}),
    ("SGD vs AdamW", "AdamW with lr 0.001, as in tutorial 003; compare it with an SGD run on the Runs page.",
     {"optimizer": "adamw", "learning_rate": 0.001}),
    ("Weight decay", "Weight decay 0.01 pulls the weights to 0: smoother weight images, slightly lower "
     "accuracy.", {"weight_decay": 0.01}),
    ("Standardised pixels", "Per-pixel mean/std instead of 0..1 (tutorial 002): compare speed and loss.",
     {"normalization": "standardize", "learning_rate": 0.1}),
    ("No shuffling", "Minibatches sorted by class (tutorial 002's question): the model forgets each digit "
     "while it sees the next.", {"batch_order": "by_class", "epochs": 3}),
]

# Tutorial 003's three learning rates on one screen: the Sweep page's controls, filled in before switching.
# A 3-value log grid from 0.005 to 50 is 0.005, 0.5, 50 (5 epochs on mnist-sample: 0.82, 0.94, diverged).
SWEEP_TITLE = "Too low, just right, too high"
SWEEP_TEXT = "lr 0.005, 0.5 and 50 trained at once on the same minibatches: one crawls, one learns, one blows up."
SWEEP_SETTINGS = {"sweep_low": "0.005", "sweep_high": "50", "sweep_count": 3, "sweep_batch_sizes": "128",
                  "sweep_weight_decays": "0", "sweep_epochs": 5, "sweep_optimizer": "sgd",
                  "sweep_normalization": "raw"}


# Tutorial 002's exercise: a classifier on folders of photos. Opens Data with the bundled example chosen.
OWN_TITLE = "Your own pictures"
OWN_TEXT = ("Train a classifier on two folders of photos: binary logistic regression from scratch (tutorial 002). "
            "Opens the bundled example; upload a zip of your own class folders under *Your own images* on Data.")


def open_example() -> None:
    """Switch to the Data page with the bundled example folder dataset chosen (does not return)."""
    example = common.folder_datasets()
    if example is None:
        st.error("The bundled example folder could not be prepared on this server (is the data folder writable?).")
        return
    st.session_state.dataset = example
    st.session_state.pop("data_choice", None)
    st.switch_page("pages/data.py", query_params={"dataset": example})


def open_sweep(settings: dict) -> None:
    """Switch to the Sweep page with its controls set to `settings` (does not return)."""
    for key, value in settings.items():
        st.session_state[key] = value  # the Sweep page's widget keys: set before its widgets exist
    st.switch_page("pages/sweep.py")


st.title("Logistic regression on MNIST")
st.markdown(
    "One linear layer and a softmax, trained live in your browser. Pick hyperparameters, watch "
    "loss and accuracy stream in, see the ten weight images form, draw a digit and see what the "
    "model thinks, and compare runs."
)

dataset = common.dataset_or_stop(common.selected_dataset_name())
cols = st.columns(3)
cols[0].metric("Training + validation images", f"{len(dataset.train_labels):,}")
cols[1].metric("Test images", f"{len(dataset.test_labels):,}")
cols[2].metric("Classes", dataset.num_classes)

st.subheader("Start here")
# (page, icon, link, what it is for): the link keeps to the page's name, so it fits a phone's width
# (a page link never wraps: a long label is cut off); the description beside it wraps.
steps = [
    ("pages/data.py", ":material/dataset:", "Data", "Look at the images, class counts and mean digits."),
    ("pages/train.py", ":material/show_chart:", "Train", "Pick a learning rate and batch size, press Start, "
     "watch the curves."),
    ("pages/weights.py", ":material/grid_view:", "Weights", "Ten 28×28 heatmaps, scrub through the epochs, "
     "compare two runs."),
    ("pages/draw.py", ":material/draw:", "Draw", "Draw a digit and see what the model sees and why."),
    ("pages/evaluate.py", ":material/fact_check:", "Evaluate", "Confusion matrix, per-class accuracy, worst "
     "mistakes."),
    ("pages/runs.py", ":material/history:", "Runs", "Compare runs, download checkpoints, export metrics."),
    ("pages/sweep.py", ":material/tune:", "Sweep", "Train many learning rates at once; find a learning rate."),
]
for path, icon, title, text in steps:
    link_col, text_col = st.columns([1, 5], vertical_alignment="center", gap="small")
    link_col.page_link(path, label=title, icon=icon)
    text_col.markdown(text)

st.subheader("Experiments from the tutorials")
st.caption("Each button opens Train (or Sweep) with the settings filled in; press Start.")
dataset_name = common.selected_dataset_name()
cards = [*EXPERIMENTS[:3], (SWEEP_TITLE, SWEEP_TEXT, None), (OWN_TITLE, OWN_TEXT, "own"), *EXPERIMENTS[3:]]
for row in range(0, len(cards), 3):
    for column, (title, text, settings) in zip(st.columns(3), cards[row:row + 3]):
        with column.container(border=True, height="stretch"):
            st.markdown(f"**{title}**  \n{text}")
            if settings == "own":
                if st.button("Open in Data", key="home_own_images", icon=":material/photo_library:"):
                    open_example()
            elif settings is None:
                if st.button("Open in Sweep", key="home_sweep", icon=":material/tune:"):
                    open_sweep(SWEEP_SETTINGS)
            elif st.button("Open in Train", key=f"home_experiment_{title}", icon=":material/model_training:"):
                common.open_in_train(defaults_for(dataset_name).replace(**settings))
