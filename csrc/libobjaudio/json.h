// A small JSON reader for engine.json and manifest.json (objects, arrays, numbers, strings, true/false/null).
// Numbers are parsed with strtod, so the float64 values Python's json module wrote come back exactly.
#pragma once

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace objaudio::json {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class Value {
 public:
    enum class Kind { Null, Bool, Number, String, Array, Object };

    Kind kind = Kind::Null;
    bool boolean = false;
    double number = 0.0;
    std::string string;
    std::vector<Value> array;
    std::map<std::string, Value> object;

    // Accessors throw json::Error naming `path` (e.g. "samplers.ddim.20") when the value is not there
    // or has another kind, so a malformed engine gives a message that says which field is wrong.
    const Value& at(const std::string& key, const std::string& path = "") const;
    bool has(const std::string& key) const { return kind == Kind::Object && object.count(key) > 0; }
    double as_number(const std::string& path) const;
    long long as_int(const std::string& path) const;
    const std::string& as_string(const std::string& path) const;
    const std::vector<Value>& as_array(const std::string& path) const;
    std::vector<double> as_numbers(const std::string& path) const;
};

Value parse(const std::string& text);   // throws json::Error with the byte offset of the problem

}  // namespace objaudio::json
