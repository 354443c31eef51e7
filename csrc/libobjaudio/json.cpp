#include "json.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace objaudio::json {
namespace {

constexpr int kMaxDepth = 64;

class Parser {
 public:
    explicit Parser(const std::string& text) : s_(text) {}

    Value document() {
        Value v = value(0);
        skip_space();
        if (i_ != s_.size()) fail("unexpected text after the JSON value");
        return v;
    }

 private:
    const std::string& s_;
    size_t i_ = 0;

    [[noreturn]] void fail(const std::string& what) const {
        throw Error(what + " at byte " + std::to_string(i_));
    }
    void skip_space() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
    }
    bool take(char c) {
        skip_space();
        if (i_ < s_.size() && s_[i_] == c) { ++i_; return true; }
        return false;
    }
    void expect(char c) {
        if (!take(c)) fail(std::string("expected '") + c + "'");
    }
    bool literal(const char* word) {
        size_t n = std::char_traits<char>::length(word);
        if (s_.compare(i_, n, word) != 0) return false;
        i_ += n;
        return true;
    }

    Value value(int depth) {
        if (depth > kMaxDepth) fail("JSON nested too deeply");
        skip_space();
        if (i_ >= s_.size()) fail("unexpected end of JSON");
        Value v;
        char c = s_[i_];
        if (c == '{') {
            ++i_;
            v.kind = Value::Kind::Object;
            if (take('}')) return v;
            do {
                skip_space();
                std::string key = string();
                expect(':');
                v.object[key] = value(depth + 1);
            } while (take(','));
            expect('}');
        } else if (c == '[') {
            ++i_;
            v.kind = Value::Kind::Array;
            if (take(']')) return v;
            do {
                v.array.push_back(value(depth + 1));
            } while (take(','));
            expect(']');
        } else if (c == '"') {
            v.kind = Value::Kind::String;
            v.string = string();
        } else if (literal("true")) {
            v.kind = Value::Kind::Bool;
            v.boolean = true;
        } else if (literal("false")) {
            v.kind = Value::Kind::Bool;
        } else if (literal("null")) {
            v.kind = Value::Kind::Null;
        } else if (literal("NaN") || literal("Infinity") || literal("-Infinity")) {
            fail("NaN or infinity in JSON");
        } else {
            v.kind = Value::Kind::Number;
            v.number = number();
        }
        return v;
    }

    double number() {
        const char* start = s_.c_str() + i_;
        char* end = nullptr;
        errno = 0;
        double d = std::strtod(start, &end);
        if (end == start) fail("expected a JSON value");
        if (errno == ERANGE && std::isinf(d)) fail("number out of range");
        i_ += static_cast<size_t>(end - start);
        return d;
    }

    std::string string() {
        if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string");
        ++i_;
        std::string out;
        while (true) {
            if (i_ >= s_.size()) fail("unterminated string");
            char c = s_[i_++];
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
            if (c != '\\') { out += c; continue; }
            if (i_ >= s_.size()) fail("unterminated escape");
            char e = s_[i_++];
            switch (e) {
                case '"': case '\\': case '/': out += e; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': out += unicode(); break;
                default: fail("bad escape in string");
            }
        }
    }

    std::string unicode() {   // \uXXXX (and surrogate pairs) as UTF-8
        unsigned cp = hex4();
        if (cp >= 0xD800 && cp < 0xDC00) {
            if (!(literal("\\u"))) fail("lone surrogate in string");
            unsigned lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("bad surrogate pair in string");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        std::string out;
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
        return out;
    }

    unsigned hex4() {
        if (i_ + 4 > s_.size()) fail("short \\u escape");
        unsigned v = 0;
        for (int k = 0; k < 4; ++k) {
            char c = s_[i_++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
            else fail("bad \\u escape");
        }
        return v;
    }
};

std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
}

}  // namespace

Value parse(const std::string& text) {
    return Parser(text).document();
}

const Value& Value::at(const std::string& key, const std::string& path) const {
    if (kind != Kind::Object) throw Error("'" + (path.empty() ? std::string("(top)") : path) + "' is not an object");
    auto it = object.find(key);
    if (it == object.end()) throw Error("missing field '" + join(path, key) + "'");
    return it->second;
}

double Value::as_number(const std::string& path) const {
    if (kind != Kind::Number) throw Error("field '" + path + "' must be a number");
    return number;
}

long long Value::as_int(const std::string& path) const {
    double d = as_number(path);
    if (d != std::floor(d) || std::fabs(d) > 9.0e15) throw Error("field '" + path + "' must be an integer");
    return static_cast<long long>(d);
}

const std::string& Value::as_string(const std::string& path) const {
    if (kind != Kind::String) throw Error("field '" + path + "' must be a string");
    return string;
}

const std::vector<Value>& Value::as_array(const std::string& path) const {
    if (kind != Kind::Array) throw Error("field '" + path + "' must be an array");
    return array;
}

std::vector<double> Value::as_numbers(const std::string& path) const {
    std::vector<double> out;
    for (const Value& v : as_array(path)) out.push_back(v.as_number(path + "[]"));
    return out;
}

}  // namespace objaudio::json
