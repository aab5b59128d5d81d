// `rot13d --status [ADDRESS]`: GET /status from the admin endpoint and print
// it as a table, as HAProxy's `show proc` does.
#pragma once

#include <optional>
#include <string>

#include "common/address.h"
#include "common/json.h"
#include "common/result.h"

namespace rot13d::supervisor {

// The body of an HTTP GET of `path` at `address` (TCP or unix), or why not.
Result<std::string> HttpGet(const ListenAddress& address, const std::string& path);

// The human table of a /status document.
std::string FormatStatusTable(const Json& status);

// Asks the endpoint at `address` (or, when empty, the first admin_listen of
// the configuration at `config_path`) and prints the table. Returns the exit
// code: 0 shown, 1 the daemon could not be reached or answered nonsense,
// 2 no address to ask.
int RequestStatus(const std::string& address, const std::string& config_path, bool config_given);

}  // namespace rot13d::supervisor
