"""TensorFlow Serving's ``PredictionService`` and ``ModelService``, so its existing clients work unchanged.

* ``Predict`` with signature ``serving_default``: input ``image_bytes``, a string tensor [N] of
  encoded images — decoded and resized by our preprocessing, then batched; with
  ``predict_images``: input ``images``, a float tensor [N, H, W, 3] of 0..255 RGB pixels.
  Outputs ``probabilities`` float [N, C] and ``classes`` string [N, C]; ``output_filter`` works.
* ``Classify``: tf.Examples with the encoded image in the bytes feature ``image_bytes`` (or
  ``image/encoded``); every class with its score, in label order.
* ``GetModelMetadata``: the version's real ``signature_def`` map, read from its saved_model.pb.
* ``ModelService.GetModelStatus``: version states as TensorFlow Serving reports them (a version
  that failed to load is END with its error).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc import aio
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from inference_svc.metrics import Metrics
from inference_svc.predictor import ModelRef, Prediction, Predictor
from inference_svc.repository import VersionState
from inference_svc.servicers.common import deadline_of
from tfic import modeldir
from tfic.errors import InvalidArgument, NotFound

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"

_OUTPUTS = (modeldir.OUTPUT_PROBABILITIES, modeldir.OUTPUT_CLASSES)
_SIGNATURE_INPUT = {modeldir.SIGNATURE_BYTES: modeldir.INPUT_BYTES, modeldir.SIGNATURE_IMAGES: modeldir.INPUT_IMAGES}
_IMAGE_FEATURES = ("image_bytes", "image/encoded")
_FLOAT_TYPES: dict[int, tuple[str, np.dtype[Any]]] = {
    types_pb2.DT_FLOAT: ("float_val", np.dtype("<f4")),
    types_pb2.DT_DOUBLE: ("double_val", np.dtype("<f8")),
    types_pb2.DT_HALF: ("half_val", np.dtype("<f2")),
    types_pb2.DT_UINT8: ("int_val", np.dtype("u1")),
}
_STATE = {
    VersionState.LOADING: get_model_status_pb2.ModelVersionStatus.LOADING,
    VersionState.AVAILABLE: get_model_status_pb2.ModelVersionStatus.AVAILABLE,
    VersionState.UNLOADING: get_model_status_pb2.ModelVersionStatus.UNLOADING,
    VersionState.END: get_model_status_pb2.ModelVersionStatus.END,
    VersionState.FAILED: get_model_status_pb2.ModelVersionStatus.END,
}
_ERROR_UNKNOWN = 2  # tensorflow.error.Code.UNKNOWN


# ----------------------------------------------------------------------------- conversions
def ref_from_pb(spec: Any) -> ModelRef:
    if not spec.name:
        raise InvalidArgument("model_spec.name is required", field="model_spec.name")
    version = spec.version.value if spec.HasField("version") else None
    return ModelRef(spec.name, version, spec.version_label)


def _shape(tensor: tensor_pb2.TensorProto) -> list[int]:
    return [int(d.size) for d in tensor.tensor_shape.dim]


def strings_from_pb(tensor: tensor_pb2.TensorProto, key: str) -> list[bytes]:
    if tensor.dtype != types_pb2.DT_STRING:
        raise InvalidArgument(
            f"input {key!r} must be a string tensor of encoded images, got {_dtype(tensor)}", field=f"inputs[{key}]"
        )
    shape = _shape(tensor)
    values = list(tensor.string_val)
    if len(shape) > 1 or (shape and shape[0] != len(values)):
        raise InvalidArgument(
            f"input {key!r} must have shape [N] with N strings, got {shape} with {len(values)}", field=f"inputs[{key}]"
        )
    return values


def pixels_from_pb(tensor: tensor_pb2.TensorProto, key: str) -> np.ndarray:
    if tensor.dtype not in _FLOAT_TYPES:
        raise InvalidArgument(
            f"input {key!r} must be a float32 tensor [N, H, W, 3], got {_dtype(tensor)}", field=f"inputs[{key}]"
        )
    field, dtype = _FLOAT_TYPES[tensor.dtype]
    shape = _shape(tensor)
    if len(shape) != 4 or min(shape) < 0:
        raise InvalidArgument(f"input {key!r} must have shape [N, H, W, 3], got {shape}", field=f"inputs[{key}]")
    count = int(np.prod(shape))
    if tensor.tensor_content:
        if len(tensor.tensor_content) != count * dtype.itemsize:
            raise InvalidArgument(
                f"input {key!r}: tensor_content has {len(tensor.tensor_content)} bytes for {shape}",
                field=f"inputs[{key}]",
            )
        values = np.frombuffer(tensor.tensor_content, dtype=dtype)
    else:
        raw = getattr(tensor, field)
        if tensor.dtype == types_pb2.DT_HALF:
            values = np.asarray(raw, dtype=np.uint16).view(np.float16)
        else:
            values = np.asarray(raw, dtype=dtype)
        if values.size == 1 and count != 1:
            values = np.full(count, values[0], dtype=dtype)
        if values.size != count:
            raise InvalidArgument(f"input {key!r} has {values.size} values for shape {shape}", field=f"inputs[{key}]")
    return values.reshape(shape).astype(np.float32, copy=False)


def _dtype(tensor: tensor_pb2.TensorProto) -> str:
    return str(types_pb2.DataType.Name(tensor.dtype))


def _dims(*sizes: int) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in sizes])


def outputs_to_pb(prediction: Prediction, wanted: list[str]) -> dict[str, tensor_pb2.TensorProto]:
    n, classes = prediction.probabilities.shape
    outputs: dict[str, tensor_pb2.TensorProto] = {}
    if modeldir.OUTPUT_PROBABILITIES in wanted:
        outputs[modeldir.OUTPUT_PROBABILITIES] = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_shape=_dims(n, classes),
            tensor_content=np.ascontiguousarray(prediction.probabilities, dtype="<f4").tobytes(),
        )
    if modeldir.OUTPUT_CLASSES in wanted:
        labels = [label.encode() for label in prediction.labels]
        outputs[modeldir.OUTPUT_CLASSES] = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, tensor_shape=_dims(n, classes), string_val=labels * n
        )
    return outputs


def _examples_images(request: classification_pb2.ClassificationRequest) -> list[bytes]:
    which = request.input.WhichOneof("kind")
    if which == "example_list":
        examples = list(request.input.example_list.examples)
    elif which == "example_list_with_context":
        examples = list(request.input.example_list_with_context.examples)
    else:
        raise InvalidArgument("Classify needs input.example_list with one tf.Example per image")
    images = []
    for i, example in enumerate(examples):
        features = example.features.feature
        key = next((k for k in _IMAGE_FEATURES if k in features), None)
        if key is None or len(features[key].bytes_list.value) != 1:
            raise InvalidArgument(
                f"example {i} needs one encoded image in the bytes feature 'image_bytes'",
                field=f"input.example_list.examples[{i}]",
            )
        images.append(features[key].bytes_list.value[0])
    return images


def _read_signatures(path: Path) -> get_model_metadata_pb2.SignatureDefMap:
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    result = get_model_metadata_pb2.SignatureDefMap()
    for graph in saved.meta_graphs:
        if "serve" in graph.meta_info_def.tags:
            for name, signature in graph.signature_def.items():
                result.signature_def[name].CopyFrom(signature)
    return result


# ----------------------------------------------------------------------------- servicers
class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    def __init__(self, predictor: Predictor, metrics: Metrics) -> None:
        self._predictor = predictor
        self._metrics = metrics
        self._signatures: OrderedDict[Path, get_model_metadata_pb2.SignatureDefMap] = OrderedDict()

    async def Predict(  # noqa: N802 - gRPC method names
        self, request: predict_pb2.PredictRequest, context: aio.ServicerContext[Any, Any]
    ) -> Any:
        ref = ref_from_pb(request.model_spec)
        deadline = deadline_of(context)
        with self._metrics.track(self._predictor.metric_label(ref.name), "Predict", deadline):
            signature = request.model_spec.signature_name
            keys = set(request.inputs)
            if signature and signature not in _SIGNATURE_INPUT:
                raise InvalidArgument(
                    f"unknown signature {signature!r}; use {modeldir.SIGNATURE_BYTES} or {modeldir.SIGNATURE_IMAGES}",
                    field="model_spec.signature_name",
                )
            if not signature:
                signature = modeldir.SIGNATURE_IMAGES if modeldir.INPUT_IMAGES in keys else modeldir.SIGNATURE_BYTES
            key = _SIGNATURE_INPUT[signature]
            if keys != {key}:
                raise InvalidArgument(
                    f"signature {signature!r} takes exactly one input {key!r}; got {sorted(keys) or 'none'}"
                )
            wanted = list(request.output_filter) or list(_OUTPUTS)
            unknown = sorted(set(wanted) - set(_OUTPUTS))
            if unknown:
                raise InvalidArgument(
                    f"unknown output(s) {unknown} in output_filter; outputs: {list(_OUTPUTS)}", field="output_filter"
                )
            if key == modeldir.INPUT_BYTES:
                images = strings_from_pb(request.inputs[key], key)
                prediction = await self._predictor.classify(ref, images, deadline)
            else:
                pixels = pixels_from_pb(request.inputs[key], key)
                prediction = await self._predictor.predict_pixels(ref, pixels, deadline)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = prediction.model
            response.model_spec.version.value = prediction.version
            response.model_spec.signature_name = signature
            for name, tensor in outputs_to_pb(prediction, wanted).items():
                response.outputs[name].CopyFrom(tensor)
            return response

    async def Classify(  # noqa: N802 - gRPC method names
        self, request: classification_pb2.ClassificationRequest, context: aio.ServicerContext[Any, Any]
    ) -> Any:
        ref = ref_from_pb(request.model_spec)
        deadline = deadline_of(context)
        with self._metrics.track(self._predictor.metric_label(ref.name), "TFServingClassify", deadline):
            images = _examples_images(request)
            prediction = await self._predictor.classify(ref, images, deadline)
            response = classification_pb2.ClassificationResponse()
            response.model_spec.name = prediction.model
            response.model_spec.version.value = prediction.version
            response.model_spec.signature_name = request.model_spec.signature_name or modeldir.SIGNATURE_BYTES
            for row in prediction.probabilities.tolist():
                item = response.result.classifications.add()
                for label, score in zip(prediction.labels, row, strict=True):
                    item.classes.add(label=label, score=score)
            return response

    async def Regress(  # noqa: N802 - gRPC method names
        self, request: Any, context: aio.ServicerContext[Any, Any]
    ) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "tfic models are classifiers; Regress is not served")

    async def MultiInference(  # noqa: N802 - gRPC method names
        self, request: Any, context: aio.ServicerContext[Any, Any]
    ) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not served; use Predict or Classify")

    async def GetModelMetadata(  # noqa: N802 - gRPC method names
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: aio.ServicerContext[Any, Any]
    ) -> Any:
        ref = ref_from_pb(request.model_spec)
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise InvalidArgument(f"metadata_field must be ['signature_def'], got {fields}")
        info = self._predictor.describe(ref)
        signatures = self._signatures.get(info.path)
        if signatures is None:
            signatures = await asyncio.to_thread(_read_signatures, info.path)
            self._signatures[info.path] = signatures
            while len(self._signatures) > 64:
                self._signatures.popitem(last=False)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = info.model
        response.model_spec.version.value = info.version
        response.metadata["signature_def"].Pack(signatures)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    def __init__(self, predictor: Predictor) -> None:
        self._predictor = predictor

    async def GetModelStatus(  # noqa: N802 - gRPC method names
        self, request: get_model_status_pb2.GetModelStatusRequest, context: Any
    ) -> Any:
        spec = request.model_spec
        status = self._predictor.model(spec.name)
        versions = status.versions
        if spec.HasField("version"):
            versions = tuple(v for v in versions if v.version == spec.version.value)
            if not versions:
                raise NotFound(f"model {spec.name!r} has no version {spec.version.value}")
        elif spec.version_label:
            versions = tuple(v for v in versions if spec.version_label in v.version_labels)
            if not versions:
                raise NotFound(f"model {spec.name!r} has no version labelled {spec.version_label!r}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for v in versions:
            item = response.model_version_status.add(version=v.version, state=_STATE[v.state])
            if v.state is VersionState.FAILED:
                item.status.error_code = _ERROR_UNKNOWN
                item.status.error_message = v.error
            elif v.error:  # END after an operator's unload: code OK, the reason said
                item.status.error_message = v.error
        return response

    async def HandleReloadConfigRequest(  # noqa: N802 - gRPC method names
        self, request: Any, context: aio.ServicerContext[Any, Any]
    ) -> Any:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "edit the model config file instead (it is re-read when it changes), or unload and load a model with "
            "tfic.v1.ModelControl",
        )
