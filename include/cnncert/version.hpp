#pragma once
/// \file version.hpp
/// Library version.

namespace cnncert {
/// Version string of the library, "major.minor.patch".
const char* version();
}  // namespace cnncert
