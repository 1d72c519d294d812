// A weights file for the loader's tests: bytes written to a new file in /tmp, removed at the end;
// spec() describes it as the loader expects a validated file (size, modification time, inode).
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "vramguard.h"

class WeightsFile {
 public:
  template <typename Word>
  explicit WeightsFile(const std::vector<Word>& words) {
    char name[] = "/tmp/vramguard-weights-XXXXXX";
    const int fd = mkstemp(name);
    if (fd < 0) throw std::runtime_error("mkstemp failed for a test weights file");
    close(fd);
    path_ = name;
    write(words);
  }
  ~WeightsFile() { std::remove(path_.c_str()); }
  WeightsFile(const WeightsFile&) = delete;
  WeightsFile& operator=(const WeightsFile&) = delete;

  // Replaces the contents (a file changed after its validation, for the tests that need one).
  template <typename Word>
  void write(const std::vector<Word>& words) const {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(words.data()),
              static_cast<std::streamsize>(words.size() * sizeof(Word)));
  }
  const std::string& path() const { return path_; }

  // Throws when the file cannot be stat'ed: a test must not load a description of nothing.
  vg_weights_file spec() const {
    struct stat st {};
    if (stat(path_.c_str(), &st) != 0) throw std::runtime_error("cannot stat " + path_);
    vg_weights_file file{};
    file.path = path_.c_str();
    file.size = static_cast<uint64_t>(st.st_size);
    file.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    file.inode = st.st_ino;
    file.dev = st.st_dev;
    return file;
  }

 private:
  std::string path_;
};
