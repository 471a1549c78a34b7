"""``tfic.v1.Classifier``: Classify, ListModels and GetModel."""

from __future__ import annotations

from typing import Any

from grpc import aio

from inference_svc.metrics import Metrics
from inference_svc.predictor import ModelRef, Prediction, Predictor, top_k
from inference_svc.repository import ModelStatus, VersionState, VersionStatus
from inference_svc.servicers.common import deadline_of
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2

SERVICE_NAME = "tfic.v1.Classifier"

_STATES = {
    VersionState.LOADING: classifier_pb2.VERSION_STATE_LOADING,
    VersionState.AVAILABLE: classifier_pb2.VERSION_STATE_AVAILABLE,
    VersionState.UNLOADING: classifier_pb2.VERSION_STATE_UNLOADING,
    VersionState.END: classifier_pb2.VERSION_STATE_END,
    VersionState.FAILED: classifier_pb2.VERSION_STATE_FAILED,
}


def ref_from_pb(spec: common_pb2.ModelSpec) -> ModelRef:
    return ModelRef(spec.name, spec.version if spec.HasField("version") else None, spec.version_label)


def classify_response_to_pb(
    prediction: Prediction, k: int, omit_labels: bool = False
) -> classifier_pb2.ClassifyResponse:
    """``omit_labels``: no label strings (and with k = 0 no label indices); the caller has them per version."""
    if prediction.output == "binary":
        results = _binary_results(prediction, omit_labels)
    else:
        results = _ranked_results(prediction, k, omit_labels)
    return classifier_pb2.ClassifyResponse(
        model_name=prediction.model,
        model_version=prediction.version,
        results=results,
        output=prediction.output,
        threshold=prediction.threshold,
    )


def _ranked_results(prediction: Prediction, k: int, omit_labels: bool) -> list[classifier_pb2.Classification]:
    labels = prediction.labels
    multi_label = prediction.output == "multi_label"
    rows = prediction.probabilities.tolist() if multi_label else []
    results = []
    for row, (indices, probabilities) in enumerate(top_k(prediction.probabilities, k)):
        # The first of equal maxima, as argmax; with top_k the list is already ranked.
        predicted = indices[0] if k else max(range(len(probabilities)), key=probabilities.__getitem__)
        if omit_labels:
            result = classifier_pb2.Classification(
                probabilities=probabilities, label_indices=indices if k else (), predicted_index=predicted
            )
        else:
            result = classifier_pb2.Classification(
                probabilities=probabilities,
                labels=[labels[i] for i in indices],
                label_indices=indices,
                predicted_label=labels[predicted],
                predicted_index=predicted,
            )
        if multi_label:  # over every label, whatever top_k shows
            result.predicted_labels.extend(_over_threshold(rows[row], labels, prediction.threshold))
        results.append(result)
    return results


def _over_threshold(values: list[float], labels: tuple[str, ...], threshold: float) -> list[str]:
    order = sorted(range(len(values)), key=values.__getitem__, reverse=True)  # stable: ties keep label order
    return [labels[i] for i in order if values[i] >= threshold]


def _binary_results(prediction: Prediction, omit_labels: bool) -> list[classifier_pb2.Classification]:
    """SageMaker's binary shape: the one probability, of the positive label; the threshold picks the label."""
    negative, positive = prediction.model_labels
    results = []
    for (p,) in prediction.probabilities.tolist():
        index = 1 if p >= prediction.threshold else 0
        if omit_labels:
            results.append(classifier_pb2.Classification(probabilities=[p], label_indices=[1], predicted_index=index))
            continue
        results.append(
            classifier_pb2.Classification(
                probabilities=[p],
                labels=[positive],
                label_indices=[1],
                predicted_label=(negative, positive)[index],
                predicted_index=index,
            )
        )
    return results


def version_to_pb(status: VersionStatus) -> classifier_pb2.VersionInfo:
    info = classifier_pb2.VersionInfo(
        version=status.version,
        state=_STATES[status.state],
        error=status.error,
        version_labels=list(status.version_labels),
    )
    if status.metadata is not None:
        info.output = status.metadata.output
        info.threshold = 0.0 if status.metadata.output == "multi_class" else status.metadata.threshold
        height, width, channels = status.metadata.image_shape
        info.labels.extend(status.metadata.labels)
        info.input_shape.CopyFrom(common_pb2.ImageShape(height=height, width=width, channels=channels))
    return info


def model_to_pb(status: ModelStatus) -> classifier_pb2.ModelInfo:
    return classifier_pb2.ModelInfo(name=status.name, versions=[version_to_pb(v) for v in status.versions])


class ClassifierServicer(classifier_pb2_grpc.ClassifierServicer):
    def __init__(self, predictor: Predictor, metrics: Metrics) -> None:
        self._predictor = predictor
        self._metrics = metrics

    async def Classify(  # noqa: N802 - gRPC method names
        self, request: classifier_pb2.ClassifyRequest, context: aio.ServicerContext[Any, Any]
    ) -> classifier_pb2.ClassifyResponse:
        ref = ref_from_pb(request.model)
        deadline = deadline_of(context)
        with self._metrics.track(self._predictor.metric_label(ref.name), "Classify", deadline):
            prediction = await self._predictor.classify(ref, list(request.images), deadline)
            return classify_response_to_pb(prediction, request.top_k, request.omit_labels)

    async def ListModels(  # noqa: N802 - gRPC method names
        self, request: classifier_pb2.ListModelsRequest, context: aio.ServicerContext[Any, Any]
    ) -> classifier_pb2.ListModelsResponse:
        return classifier_pb2.ListModelsResponse(models=[model_to_pb(m) for m in self._predictor.models()])

    async def GetModel(  # noqa: N802 - gRPC method names
        self, request: classifier_pb2.GetModelRequest, context: aio.ServicerContext[Any, Any]
    ) -> Any:
        return model_to_pb(self._predictor.model(request.name))
