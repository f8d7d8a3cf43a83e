#pragma once
/// \file cnncert.hpp
/// Umbrella header of the cnncert library.

#include "cnncert/cuda.hpp"
#include "cnncert/error.hpp"
#include "cnncert/images.hpp"
#include "cnncert/network.hpp"
#include "cnncert/onnx.hpp"
#include "cnncert/version.hpp"
