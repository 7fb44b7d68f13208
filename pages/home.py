"""Home: what this dashboard is and where to start."""
import streamlit as st

from pages import common

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
steps = [
    ("pages/data.py", ":material/dataset:", "Data: look at the images, class counts and mean digits."),
    ("pages/train.py", ":material/show_chart:", "Train: pick a learning rate and batch size, press Start, watch the curves."),
    ("pages/weights.py", ":material/grid_view:", "Weights: ten 28×28 heatmaps, scrub through the epochs."),
    ("pages/draw.py", ":material/draw:", "Draw: draw a digit and see what the model sees and why."),
    ("pages/evaluate.py", ":material/fact_check:", "Evaluate: confusion matrix, per-class accuracy, worst mistakes."),
    ("pages/runs.py", ":material/history:", "Runs: compare runs, download checkpoints, export metrics."),
    ("pages/sweep.py", ":material/tune:", "Sweep: train many learning rates at once; find a learning rate."),
]
for path, icon, text in steps:
    st.page_link(path, label=text, icon=icon)
