"""The OpenAPI document's component schemas: errors, the four prediction shapes, models, TF Serving's bodies."""

from __future__ import annotations

from typing import Any


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def schemas() -> dict[str, Any]:
    probabilities = {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}}
    labels = {"type": "array", "items": {"type": "string"}}
    output = {
        "type": "string",
        "enum": ["multi_class", "multi_label", "binary"],
        "description": (
            "What the probabilities are: a softmax over the labels, one sigmoid per label, or (binary) the one "
            "probability of the model's second label."
        ),
    }
    threshold = {
        "type": "number",
        "description": "multi_label and binary: the probability at which a label is predicted (0 for multi_class).",
    }
    verbose = {
        "probabilities": probabilities,
        "labels": labels,
        "predicted_label": {"type": "string"},
        "predicted_labels": {**labels, "description": "multi_label only: every label at or over the threshold."},
        "threshold": threshold,
    }
    b64 = {
        "type": "object",
        "required": ["b64"],
        "additionalProperties": False,
        "properties": {"b64": {"type": "string", "format": "byte", "description": "Base64 of an encoded image."}},
    }
    named = {
        "type": "object",
        "required": ["image_bytes"],
        "additionalProperties": False,
        "properties": {"image_bytes": b64},
    }
    version = {
        "type": "object",
        "required": ["version", "state", "error", "labels", "input_shape", "version_labels"],
        "properties": {
            "version": {"type": "integer"},
            "state": {"type": "string", "enum": ["UNSPECIFIED", "LOADING", "AVAILABLE", "UNLOADING", "END", "FAILED"]},
            "error": {"type": "string"},
            "labels": labels,
            "input_shape": {
                "type": "object",
                "nullable": True,
                "required": ["height", "width", "channels"],
                "properties": {k: {"type": "integer"} for k in ("height", "width", "channels")},
            },
            "version_labels": labels,
            "output": output,
            "threshold": threshold,
        },
    }
    tensor = {
        "type": "object",
        "properties": {
            "dtype": {"type": "string"},
            "tensor_shape": {
                "type": "object",
                "properties": {
                    "dim": {"type": "array", "items": {"type": "object"}},
                    "unknown_rank": {"type": "boolean"},
                },
            },
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "status", "message"],
                    "additionalProperties": False,
                    "properties": {
                        "code": {"type": "integer", "description": "The HTTP status."},
                        "status": {"type": "string", "description": "The canonical gRPC status name."},
                        "message": {"type": "string"},
                        "reason": {"type": "string", "description": "Machine-readable class, e.g. invalid_image."},
                        "details": {
                            "type": "array",
                            "description": (
                                "The google.rpc error details the gRPC services send, in protobuf's JSON mapping: "
                                "ErrorInfo (reason, domain, metadata), RetryInfo (retryDelay), "
                                "BadRequest (fieldViolations)."
                            ),
                            "items": {
                                "type": "object",
                                "required": ["@type"],
                                "properties": {"@type": {"type": "string"}},
                            },
                        },
                    },
                }
            },
        },
        "Probabilities": {**probabilities, "description": "application/json: the probabilities only."},
        "VerbosePrediction": {
            "type": "object",
            "description": "application/json;verbose.",
            "required": ["probabilities", "labels", "predicted_label"],
            "additionalProperties": False,
            "properties": verbose,
        },
        "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
        "Version": version,
        "Model": {
            "type": "object",
            "required": ["name", "versions"],
            "properties": {"name": {"type": "string"}, "versions": {"type": "array", "items": version}},
        },
        "ModelList": {
            "type": "object",
            "required": ["models"],
            "properties": {"models": {"type": "array", "items": ref("Model")}},
        },
        "TfsPredictRequest": {
            "type": "object",
            "properties": {
                "signature_name": {"type": "string", "enum": ["serving_default"]},
                "instances": {"type": "array", "minItems": 1, "items": {"oneOf": [b64, named]}},
                "inputs": {
                    "oneOf": [
                        {"type": "array", "minItems": 1, "items": b64},
                        {
                            "type": "object",
                            "required": ["image_bytes"],
                            "additionalProperties": False,
                            "properties": {"image_bytes": {"type": "array", "minItems": 1, "items": b64}},
                        },
                    ]
                },
            },
            "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
        },
        "TfsPredictResponse": {
            "type": "object",
            "oneOf": [
                {
                    "required": ["predictions"],
                    "properties": {
                        "predictions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["probabilities", "classes"],
                                "properties": {"probabilities": probabilities, "classes": labels},
                            },
                        }
                    },
                },
                {
                    "required": ["outputs"],
                    "properties": {
                        "outputs": {
                            "type": "object",
                            "required": ["probabilities", "classes"],
                            "properties": {
                                "probabilities": {"type": "array", "items": probabilities},
                                "classes": {"type": "array", "items": labels},
                            },
                        }
                    },
                },
            ],
        },
        "TfsClassifyRequest": {
            "type": "object",
            "required": ["examples"],
            "properties": {
                "signature_name": {"type": "string", "enum": ["serving_default"]},
                "context": {"type": "object"},
                "examples": {"type": "array", "minItems": 1, "items": named},
            },
        },
        "TfsClassifyResponse": {
            "type": "object",
            "required": ["results"],
            "properties": {
                "results": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "array",
                            "minItems": 2,
                            "maxItems": 2,
                            "items": {"oneOf": [{"type": "string"}, {"type": "number"}]},
                        },
                    },
                }
            },
        },
        "TfsModelStatus": {
            "type": "object",
            "required": ["model_version_status"],
            "properties": {
                "model_version_status": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["version", "state", "status"],
                        "properties": {
                            "version": {"type": "string"},
                            "state": {"type": "string"},
                            "status": {
                                "type": "object",
                                "properties": {"error_code": {"type": "string"}, "error_message": {"type": "string"}},
                            },
                        },
                    },
                }
            },
        },
        "TfsMetadata": {
            "type": "object",
            "required": ["model_spec", "metadata"],
            "properties": {
                "model_spec": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "signature_name": {"type": "string"},
                        "version": {"type": "string"},
                    },
                },
                "metadata": {
                    "type": "object",
                    "properties": {
                        "signature_def": {
                            "type": "object",
                            "properties": {
                                "signature_def": {
                                    "type": "object",
                                    "additionalProperties": {
                                        "type": "object",
                                        "properties": {
                                            "inputs": {"type": "object", "additionalProperties": tensor},
                                            "outputs": {"type": "object", "additionalProperties": tensor},
                                            "method_name": {"type": "string"},
                                        },
                                    },
                                }
                            },
                        }
                    },
                },
            },
        },
    }
