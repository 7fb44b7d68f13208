import pytest
import torch
import torch.nn.functional as F

from lrcore import events as ev
from lrcore.config import TrainConfig
from lrcore.data import load_dataset
from lrcore.evaluate import contributions, evaluate_model, predict
from lrcore.training import train


@pytest.fixture(scope="module")
def trained():
    dataset = load_dataset("mnist-sample")
    finished = [e for e in train(TrainConfig(epochs=3), dataset) if isinstance(e, ev.Finished)][0]
    return dataset, finished


@pytest.fixture(scope="module")
def evaluation(trained):
    dataset, finished = trained
    return evaluate_model(finished.model, finished.normalizer, dataset.test_images, dataset.test_labels)


def test_accuracy_and_loss_agree_with_the_training_loop(trained, evaluation):
    _, finished = trained
    assert evaluation.accuracy == pytest.approx(finished.test_accuracy, abs=1e-9)
    assert evaluation.loss == pytest.approx(finished.test_loss, abs=1e-5)


def test_confusion_matrix_counts(evaluation):
    confusion = evaluation.confusion
    assert confusion.sum() == 2000 and confusion.sum(1).tolist() == [200] * 10
    assert confusion.diag().sum().item() == round(evaluation.accuracy * 2000)
    assert torch.allclose(evaluation.normalized_confusion().sum(1), torch.ones(10, dtype=torch.float64))


def test_per_class_precision_recall(evaluation):
    rows = evaluation.per_class()
    confusion = evaluation.confusion.double()
    assert rows[3]["recall"] == pytest.approx((confusion[3, 3] / confusion[3].sum()).item())
    assert rows[3]["precision"] == pytest.approx((confusion[3, 3] / confusion[:, 3].sum()).item())
    assert sum(r["support"] for r in rows) == 2000


def test_cells_and_losses(evaluation):
    true_class, predicted, count = evaluation.most_confused(1)[0]
    assert true_class != predicted and evaluation.confusion[true_class, predicted] == count
    cell = evaluation.cell(true_class, predicted)
    assert len(cell) == count and (evaluation.labels[cell] == true_class).all()
    top = evaluation.top_losses(10)
    assert (evaluation.losses[top][:-1] >= evaluation.losses[top][1:]).all()
    assert evaluation.losses[top[0]] == evaluation.losses.max()


def test_predict_gives_probabilities(trained, evaluation):
    dataset, finished = trained
    probabilities = predict(finished.model, finished.normalizer, dataset.test_images[:5])
    assert torch.allclose(probabilities.sum(1), torch.ones(5))
    assert torch.equal(probabilities.argmax(1), evaluation.predictions[:5])


def test_contributions_sum_to_the_logits(trained):
    dataset, finished = trained
    image = dataset.test_images[0]
    maps = contributions(finished.model, finished.normalizer, image)
    logits = finished.model(finished.normalizer(image.unsqueeze(0)))[0]
    assert torch.allclose(maps.sum((1, 2)) + finished.model.linear.bias, logits, atol=1e-4)
    assert F.softmax(logits, 0).argmax() == (maps.sum((1, 2)) + finished.model.linear.bias).argmax()
