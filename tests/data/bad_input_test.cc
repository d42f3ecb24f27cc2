// Every bad input yields a DataError that names the offending file: a missing or truncated shard,
// a checksum mismatch, token ids out of the manifest's vocabulary (or negative), a model vocabulary
// smaller than the manifest's, an unknown manifest version, a dtype mismatch, an empty dataset. Errors found on the prefetch thread surface from next().
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "data/dataset_writer.h"
#include "data/hdf5.h"
#include "data/loader.h"
#include "data/manifest.h"
#include "data/shard.h"
#include "data/split_reader.h"
#include "tests/data/data_test_util.h"

namespace tessera::data {
namespace {

using testing::read_file;
using testing::ScratchDir;
using testing::write_file;

class BadInputTest : public ::testing::Test {
 protected:
  // Train: 3 shards of 100 tokens with ids 0..299 (so a vocab of 200 is too small); validation: 50.
  void SetUp() override {
    DatasetWriterOptions o;
    o.dir = dir();
    o.vocab_size = 300;
    o.shard_tokens = 100;
    DatasetWriter writer(o);
    std::vector<uint32_t> tokens(300);
    for (uint32_t i = 0; i < 300; ++i) tokens[i] = i;
    writer.append(Split::kTrain, tokens, true);
    writer.append(Split::kValidation, std::span(tokens).first(50), true);
    Manifest base;
    base.tokenizer = "byte";
    writer.finish(base);
  }

  std::string dir() const { return scratch_ / "ds"; }
  std::string shard(int i) const { return dir() + "/shard-0000" + std::to_string(i) + ".h5"; }
  std::string manifest() const { return dir() + "/manifest.yaml"; }

  LoaderOptions options() const {
    LoaderOptions o;
    o.dataset_dir = dir();
    o.seq_len = 9;
    o.global_batch = 4;
    o.vocab_size = 300;
    return o;
  }

  // Reads every sample once (enough steps to touch every shard).
  static void drain(Loader& loader) {
    std::vector<int32_t> batch;
    for (int64_t i = 0; i < loader.samples_per_epoch() / 4 + 1; ++i) loader.next(batch);
  }

  void replace_in_manifest(const std::string& pattern, const std::string& replacement) {
    const std::string text = read_file(manifest());
    const std::string edited = std::regex_replace(text, std::regex(pattern), replacement);
    ASSERT_NE(edited, text) << "pattern " << pattern << " not in manifest";
    write_file(manifest(), edited);
  }

  // Overwrites one token of a shard in place (HDF5 read-write), leaving the manifest as it was.
  void corrupt_token(const std::string& path, uint64_t position, uint16_t value) {
    Hdf5Guard guard;
    const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(file, 0);
    const hid_t dataset = H5Dopen2(file, "tokens", H5P_DEFAULT);
    const hid_t space = H5Dget_space(dataset);
    const hsize_t start[1] = {position}, count[1] = {1};
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
    const hid_t memory = H5Screate_simple(1, count, nullptr);
    ASSERT_GE(H5Dwrite(dataset, H5T_NATIVE_UINT16, memory, space, H5P_DEFAULT, &value), 0);
    H5Sclose(memory);
    H5Sclose(space);
    H5Dclose(dataset);
    H5Fclose(file);
  }

  ScratchDir scratch_;
};

TEST_F(BadInputTest, GoodDatasetLoads) {
  Loader loader(options());
  drain(loader);
  EXPECT_EQ(loader.samples_per_epoch(), 33);
}

TEST_F(BadInputTest, MissingManifest) {
  std::filesystem::remove(manifest());
  EXPECT_DATA_ERROR(Loader{options()}, manifest(), "not found");
  LoaderOptions o = options();
  o.dataset_dir = scratch_ / "nowhere";
  EXPECT_DATA_ERROR(Loader{o}, scratch_ / "nowhere", "not found");
}

TEST_F(BadInputTest, MissingShard) {
  std::filesystem::remove(shard(1));
  EXPECT_DATA_ERROR(Loader{options()}, shard(1), "missing");
}

TEST_F(BadInputTest, TruncatedShard) {
  const uintmax_t size = std::filesystem::file_size(shard(2));
  std::filesystem::resize_file(shard(2), size / 2);
  EXPECT_DATA_ERROR(Loader{options()}, shard(2), "truncated");
  std::filesystem::resize_file(shard(2), 0);
  EXPECT_DATA_ERROR(Loader{options()}, shard(2));
}

TEST_F(BadInputTest, ChecksumMismatchSurfacesFromNextWithPrefetch) {
  corrupt_token(shard(1), 17, 5);
  for (int prefetch : {0, 2}) {
    for (uint64_t cache : {uint64_t{0}, uint64_t{1} << 20}) {
      LoaderOptions o = options();
      o.prefetch = prefetch;
      o.cache_bytes = cache;
      Loader loader(o);  // metadata is fine: the corruption is found on first read
      EXPECT_DATA_ERROR(drain(loader), shard(1), "checksum mismatch");
      // It stays failed rather than hanging or skipping the bad batch.
      std::vector<int32_t> batch;
      EXPECT_DATA_ERROR(loader.next(batch), shard(1), "checksum mismatch");
    }
  }
  EXPECT_DATA_ERROR(read_split_tokens(dir(), kTrainSplit), shard(1), "checksum mismatch");
}

TEST_F(BadInputTest, ModelVocabularySmallerThanTheManifestsIsRefused) {
  LoaderOptions o = options();
  o.vocab_size = 200;  // the manifest says 300: ids 200..299 would have no embedding row
  EXPECT_DATA_ERROR(Loader{o}, manifest(), "vocab_size 300", "model.vocab_size 200");
  EXPECT_DATA_ERROR((SplitReader{dir(), read_manifest(dir()), kValidationSplit, 299, 0}), manifest(),
                    "model.vocab_size 299");
  o.vocab_size = 301;  // a larger model is fine
  Loader loader(o);
  drain(loader);
}

TEST_F(BadInputTest, TokenIdOutOfTheManifestsVocabulary) {
  // The shards hold ids up to 299 (their checksums intact) but the manifest declares 200 ids: shard
  // 2 (ids 200..299) is refused whatever the model's size, and read_split_tokens refuses it too.
  replace_in_manifest("vocab_size: 300", "vocab_size: 200");
  for (const int64_t model_vocab : {int64_t{0}, int64_t{200}, int64_t{300}}) {
    for (const uint64_t cache : {uint64_t{0}, uint64_t{1} << 20}) {
      LoaderOptions o = options();
      o.vocab_size = model_vocab;
      o.cache_bytes = cache;
      Loader loader(o);
      EXPECT_DATA_ERROR(drain(loader), shard(2), "token id 200", "position 0", "vocab_size 200",
                        manifest());
    }
  }
  EXPECT_DATA_ERROR(read_split_tokens(dir(), kTrainSplit), shard(2), "token id 200");
}

TEST_F(BadInputTest, SignedTokensAreRefusedNamingTheNegativeId) {
  // A shard written by another tool as int32 with a negative id at position 7.
  std::vector<int32_t> ids(100, 5);
  ids[7] = -3;
  const std::vector<uint64_t> offsets = {0};
  {
    Hdf5Guard guard;
    H5Id file = h5_create_file(shard(1));
    h5_write_1d(file, "tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, ids.data(), ids.size(), 100, shard(1));
    h5_write_1d(file, "doc_offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, offsets.data(), 1, 1, shard(1));
  }
  EXPECT_DATA_ERROR(Loader{options()}, shard(1), "token id -3", "position 7", "negative",
                    "vocab_size is 300");
}

TEST_F(BadInputTest, DocOffsetsMustMatchTheManifestAndAscend) {
  // Shard 1 holds no document start; rewrite it with two (descending) offsets.
  std::vector<uint16_t> ids(100, 5);
  const std::vector<uint64_t> offsets = {50, 20};
  {
    Hdf5Guard guard;
    H5Id file = h5_create_file(shard(1));
    h5_write_1d(file, "tokens", H5T_STD_U16LE, H5T_NATIVE_UINT16, ids.data(), ids.size(), 100, shard(1));
    h5_write_1d(file, "doc_offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, offsets.data(), 2, 2, shard(1));
  }
  const Manifest m = read_manifest(dir());
  ShardInfo info = m.split(kTrainSplit, manifest()).shards[1];
  ASSERT_EQ(info.documents, 0u);
  EXPECT_DATA_ERROR(ShardReader(shard(1), info, m.dtype).read_doc_offsets(), shard(1),
                    "holds 2 entries but the manifest lists 0");
  info.documents = 2;
  EXPECT_DATA_ERROR(ShardReader(shard(1), info, m.dtype).read_doc_offsets(), shard(1),
                    "entry 1 (20) is not ascending");
}

TEST_F(BadInputTest, UnknownManifestVersion) {
  replace_in_manifest("format_version: 1", "format_version: 7");
  EXPECT_DATA_ERROR(read_manifest(dir()), manifest(), "format_version", "version 7");
  EXPECT_DATA_ERROR(Loader{options()}, manifest(), "format_version");
}

TEST_F(BadInputTest, DtypeMismatch) {
  replace_in_manifest("token_dtype: uint16", "token_dtype: uint32");
  EXPECT_DATA_ERROR(Loader{options()}, shard(0), "dtype mismatch", "uint16", "uint32");
  replace_in_manifest("token_dtype: uint32", "token_dtype: int8");
  EXPECT_DATA_ERROR(Loader{options()}, manifest(), "token_dtype");
}

TEST_F(BadInputTest, ManifestTokenCountDisagreesWithShard) {
  replace_in_manifest("shard-00001.h5, tokens: 100", "shard-00001.h5, tokens: 120");
  replace_in_manifest("tokens: 300\n", "tokens: 320\n");
  EXPECT_DATA_ERROR(Loader{options()}, shard(1), "manifest lists 120");
}

TEST_F(BadInputTest, EmptyDataset) {
  LoaderOptions o = options();
  o.split = kValidationSplit;
  o.seq_len = 50;  // 50 tokens cannot make one sample of 51
  EXPECT_DATA_ERROR(Loader{o}, manifest(), "empty", "50 tokens");
  // A split with no shards at all.
  std::string text = read_file(manifest());
  const size_t at = text.find("validation:");
  ASSERT_NE(at, std::string::npos);
  write_file(manifest(), text.substr(0, at) + "validation: {tokens: 0, documents: 0, shards: []}\n");
  o.seq_len = 4;
  EXPECT_DATA_ERROR(Loader{o}, manifest(), "empty", "0 tokens");
}

TEST_F(BadInputTest, MalformedManifests) {
  write_file(manifest(), "format_version: [1\n");
  EXPECT_DATA_ERROR(read_manifest(dir()), manifest(), "YAML");
  write_file(manifest(), "format_version: 1\ntokenizer: byte\nvocab_size: 70000\ntoken_dtype: uint16\nsplits: {}\n");
  EXPECT_DATA_ERROR(read_manifest(dir()), manifest(), "token_dtype", "70000");
  write_file(manifest(), "format_version: 1\ntokenizer: byte\nvocab_size: 300\ntoken_dtype: uint16\n"
                         "splits: {train: {shards: [{file: ../x.h5, tokens: 1, checksum: 'xxh64:0000000000000000'}]}}\n");
  EXPECT_DATA_ERROR(read_manifest(dir()), manifest(), "splits.train.shards[0].file");
  write_file(manifest(), "format_version: 1\ntokenizer: byte\nvocab_size: 300\ntoken_dtype: uint16\n"
                         "splits: {train: {shards: [{file: a.h5, tokens: 1, checksum: 'md5:00'}]}}\n");
  EXPECT_DATA_ERROR(read_manifest(dir()), manifest(), "splits.train.shards[0].checksum");
  write_file(manifest(), "format_version: 1\ntokenizer: synthetic\nvocab_size: 300\ntoken_dtype: uint16\nsplits: {}\n");
  EXPECT_DATA_ERROR(read_manifest(dir()), manifest(), "entropy_rate_nats");
}

TEST_F(BadInputTest, InterruptedPrepareLeavesNoCompleteLookingShard) {
  // A shard whose write was cut off exists only under its temporary name; with no manifest the
  // directory is not a dataset, and a new prepare refuses to mix with it unless told to overwrite.
  write_file(dir() + "/shard-00009.h5.tmp", "partial");
  DatasetWriterOptions o;
  o.dir = dir();
  o.vocab_size = 10;
  EXPECT_DATA_ERROR(DatasetWriter{o}, dir(), "--overwrite");
  o.overwrite = true;
  DatasetWriter writer(o);
  EXPECT_FALSE(std::filesystem::exists(dir() + "/shard-00009.h5.tmp"));
  EXPECT_FALSE(std::filesystem::exists(manifest()));
}

}  // namespace
}  // namespace tessera::data
