#pragma once
/// \file cnncert.hpp
/// Umbrella header of the cnncert library.

#include "cnncert/baselines.hpp"
#include "cnncert/certify.hpp"
#include "cnncert/convert.hpp"
#include "cnncert/cuda.hpp"
#include "cnncert/engine.hpp"
#include "cnncert/error.hpp"
#include "cnncert/images.hpp"
#include "cnncert/lp.hpp"
#include "cnncert/network.hpp"
#include "cnncert/onnx.hpp"
#include "cnncert/proven.hpp"
#include "cnncert/relaxation.hpp"
#include "cnncert/version.hpp"
#include "cnncert/vnnlib.hpp"
