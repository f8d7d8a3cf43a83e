"""A minimal ONNX protobuf writer for test models (no onnx package needed): one graph of nodes
over a float input of a given shape."""


def _varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _field(num, payload):
    if isinstance(payload, int):
        return _varint(num << 3) + _varint(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    return _varint((num << 3) | 2) + _varint(len(payload)) + payload


def _value_info(name, shape):
    dims = b"".join(_field(1, _field(1, d)) for d in shape)
    tensor = _field(1, 1) + _field(2, dims)  # elem_type FLOAT, shape
    return _field(1, name) + _field(2, _field(1, tensor))


def model(nodes, input_shape, output_shape, input_name="x", output_name="y"):
    """nodes: (op_type, inputs, outputs) triples."""
    graph = b"".join(_field(1, b"".join([*(_field(1, i) for i in ins), *(_field(2, o) for o in outs),
                                         _field(3, f"n{k}"), _field(4, op)]))
                     for k, (op, ins, outs) in enumerate(nodes))
    graph += _field(2, "g") + _field(11, _value_info(input_name, input_shape)) + _field(12, _value_info(output_name, output_shape))
    return _field(1, 7) + _field(8, _field(1, "") + _field(2, 13)) + _field(7, graph)
