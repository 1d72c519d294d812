// RecordTable, the tracker's per-shard store: checked against std::unordered_map over random
// insertions, lookups and removals, with small tables so probe runs wrap around the end and
// backward-shift deletion moves entries. No GPU: addresses are never dereferenced.
#include "vramguard/record_table.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

using namespace vramguard;

namespace {

StoredRecord record_at(std::uintptr_t address, std::uint64_t bytes) {
  StoredRecord record;
  record.key = address;
  record.bytes = bytes;
  const std::string text = "record " + std::to_string(address);
  record.description = std::make_unique<char[]>(text.size() + 1);
  std::copy(text.begin(), text.end(), record.description.get());
  record.description[text.size()] = '\0';
  return record;
}

std::string description(const StoredRecord& record) { return record.description_or_empty(); }

StoredRecord* find(RecordTable& table, std::uintptr_t address) {
  return table.find(address, RecordTable::hash_of(address));
}

// Every record the model holds is found with its bytes, and iteration lists exactly those.
void expect_same(RecordTable& table,
                 const std::unordered_map<std::uintptr_t, std::uint64_t>& model) {
  ASSERT_EQ(table.size(), model.size());
  for (const auto& [address, bytes] : model) {
    const StoredRecord* found = find(table, address);
    ASSERT_NE(found, nullptr) << "lost " << address;
    EXPECT_EQ(found->bytes, bytes);
    EXPECT_EQ(description(*found), "record " + std::to_string(address));
  }
  std::size_t listed = 0;
  for (const StoredRecord& record : table) {
    const auto address = record.key;
    ASSERT_EQ(model.count(address), 1u) << "lists " << address << ", which was removed";
    ++listed;
  }
  EXPECT_EQ(listed, model.size());
}

}  // namespace

TEST(RecordTable, InsertFindErase) {
  RecordTable table;
  EXPECT_TRUE(table.empty());
  EXPECT_EQ(find(table, 0x1000), nullptr);
  const auto [stored, inserted] =
      table.try_insert(record_at(0x1000, 7), RecordTable::hash_of(0x1000));
  ASSERT_TRUE(inserted);
  EXPECT_EQ(stored->bytes, 7u);
  EXPECT_EQ(find(table, 0x1000), stored);

  StoredRecord out;
  table.erase(stored, &out);
  EXPECT_EQ(out.bytes, 7u);
  EXPECT_EQ(description(out), "record 4096");
  EXPECT_TRUE(table.empty());
  EXPECT_EQ(find(table, 0x1000), nullptr);
}

TEST(RecordTable, DuplicateLeavesBothRecordsAlone) {
  RecordTable table;
  table.try_insert(record_at(0x2000, 1), RecordTable::hash_of(0x2000));
  StoredRecord again = record_at(0x2000, 99);
  const auto [existing, inserted] =
      table.try_insert(std::move(again), RecordTable::hash_of(0x2000));
  EXPECT_FALSE(inserted);
  EXPECT_EQ(existing->bytes, 1u);
  EXPECT_EQ(description(again), "record 8192");  // not moved from
  EXPECT_EQ(table.size(), 1u);
}

TEST(RecordTable, MatchesAMapOverRandomOperations) {
  std::mt19937_64 random(20261122);
  for (const std::uintptr_t key_space : {8u, 40u, 300u, 5000u}) {
    RecordTable table;
    std::unordered_map<std::uintptr_t, std::uint64_t> model;
    for (int step = 0; step < 20000; ++step) {
      // Dense small addresses (1, 2, 3, ...) as the C ABI accepts them, and page-aligned ones.
      const std::uintptr_t n = 1 + random() % key_space;
      const std::uintptr_t address = (step & 1) ? n : n << 12;
      const std::uint64_t hash = RecordTable::hash_of(address);
      StoredRecord* found = table.find(address, hash);
      ASSERT_EQ(found != nullptr, model.count(address) == 1) << "step " << step;
      if (found == nullptr) {
        const std::uint64_t bytes = 1 + random() % 1000;
        ASSERT_TRUE(table.try_insert(record_at(address, bytes), hash).second);
        model[address] = bytes;
      } else if (random() % 3 != 0) {  // lean towards removal so the table shrinks and regrows
        StoredRecord out;
        table.erase(found, &out);
        EXPECT_EQ(out.bytes, model[address]);
        model.erase(address);
      }
      if (step % 997 == 0) expect_same(table, model);
    }
    expect_same(table, model);
    // Emptied in insertion order, the table is empty again and finds nothing.
    std::vector<std::uintptr_t> addresses;
    for (const auto& entry : model) addresses.push_back(entry.first);
    for (const std::uintptr_t address : addresses) {
      table.erase(find(table, address), nullptr);
      model.erase(address);
    }
    expect_same(table, model);
  }
}

TEST(RecordTable, GrowsPastManyRecords) {
  RecordTable table;
  constexpr std::uintptr_t kCount = 100'000;
  for (std::uintptr_t i = 1; i <= kCount; ++i) {
    ASSERT_TRUE(table.try_insert(record_at(i << 8, i), RecordTable::hash_of(i << 8)).second);
  }
  EXPECT_EQ(table.size(), kCount);
  for (std::uintptr_t i = 1; i <= kCount; i += 7) {
    const StoredRecord* found = find(table, i << 8);
    ASSERT_NE(found, nullptr);
    EXPECT_EQ(found->bytes, i);
  }
}
