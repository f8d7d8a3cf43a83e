#pragma once
/// \file convert.hpp
/// Network rewrites.

#include "cnncert/network.hpp"

namespace cnncert {

/// The same function with every convolution and average pooling unrolled into a dense layer
/// (followed by a reshape back to (C, H, W)): the Fast-Lin baseline's view of a CNN. Throws
/// InvalidArgument when a dense matrix would exceed `max_weights` entries.
Network convert_to_dense(const Network& net, int64_t max_weights = int64_t(1) << 28);

}  // namespace cnncert
