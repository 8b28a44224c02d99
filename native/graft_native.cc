// Graft's native engine: a layer graph run by libtorch (ATen + autograd), called from Node
// through N-API. JavaScript (src/model/native-plan.ts, src/engine/native.ts) describes a
// tfjs-layers model as a list of ops and hands over its weights once; each training batch is
// then one call that runs forward, the loss (cross-entropy, plus LwF distillation or the EWC
// penalty when the old task is kept: setLoss), backward and the AdamW update, and each
// prediction batch one call. Weights and optimizer state go back to JavaScript on request.
//
// Layout: tfjs tensors are NHWC. ATen sees them as NCHW tensors with channels-last strides
// (the same bytes), so inputs and outputs are not transposed; weights are converted once.

#include <napi.h>
#include <torch/torch.h>

#include <torch/csrc/autograd/custom_function.h>
#include "bn_bf16.h"
#ifndef GRAFT_NO_DIST
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <dlfcn.h>
#include <cmath>
#include <cstring>
#include <limits>
#include <malloc.h>
#include <string>
#include <vector>

namespace {

using at::Tensor;

enum class Act { Linear, Relu, Relu6, Sigmoid, Tanh, Softmax, Elu, Swish, LeakyRelu, Softplus };

Act parseAct(const std::string& s) {
  if (s == "linear" || s.empty()) return Act::Linear;
  if (s == "relu") return Act::Relu;
  if (s == "relu6") return Act::Relu6;
  if (s == "sigmoid") return Act::Sigmoid;
  if (s == "tanh") return Act::Tanh;
  if (s == "softmax") return Act::Softmax;
  if (s == "elu") return Act::Elu;
  if (s == "swish") return Act::Swish;
  if (s == "leakyrelu") return Act::LeakyRelu;
  if (s == "softplus") return Act::Softplus;
  throw std::runtime_error("unsupported activation \"" + s + "\"");
}

// "[a, b, c]", for messages.
std::string shapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// "the params are 0..4", or "there are no params": the valid indices of `count` things, for messages.
std::string indexRange(int64_t count, const std::string& things) {
  return count == 0 ? "there are no " + things : "the " + things + " are 0.." + std::to_string(count - 1);
}

// Softmax and friends act on the last axis in tfjs: channels, which is dim 1 of a 4-D NCHW view.
int64_t lastAxis(const Tensor& x) { return x.dim() == 4 ? 1 : x.dim() - 1; }

// ReLU6's backward for bf16: the gradient where 0 < y < 6, else 0, from the saved output y, as
// two passes of relu's vectorized backward (0.54 ms each on a [32, 96, 48, 48] bf16 activation).
// ATen 1.13 has no bf16 kernel for hardtanh's backward ("hardshrink_backward_cpu not
// implemented for 'BFloat16'", the error that stops PyTorch's autocast from training
// MobileNetV2 in bf16); clamp's backward goes through `where`, measured at 16 ms per
// [32, 96, 48, 48] activation here, against 1.4 ms for fp32 hardtanh's backward.
Tensor relu6BackwardBf16(const Tensor& g, const Tensor& y) {
  return at::threshold_backward(at::threshold_backward(g, y, 0.0), y.neg(), -6.0);
}

// ReLU6 on bf16 tensors that train: keeps its output for relu6BackwardBf16.
struct Relu6Bf16 : public torch::autograd::Function<Relu6Bf16> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x) {
    Tensor y = at::hardtanh(x, 0.0, 6.0);
    ctx->save_for_backward({y});
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list g) {
    return {relu6BackwardBf16(g[0], ctx->get_saved_variables()[0])};
  }
};

// GRAFT_NO_FUSED_BN=1: bf16 training BatchNorm through ATen's ops instead of bn_bf16.h (for A/B).
bool noFusedBn() {
  static const bool off = getenv("GRAFT_NO_FUSED_BN") != nullptr && std::string(getenv("GRAFT_NO_FUSED_BN")) != "0";
  return off;
}

Tensor reluSix(const Tensor& x) {
  if (x.scalar_type() == at::kBFloat16 && x.requires_grad()) return Relu6Bf16::apply(x);
  return at::hardtanh(x, 0.0, 6.0);
}

// ReLU and ReLU6 on a tensor nothing else reads: in place, as torchvision's ReLU6(inplace=True).
Tensor activateInPlace(Tensor x, Act a) {
  if (a == Act::Relu) return at::relu_(x);
  if (x.scalar_type() == at::kBFloat16 && x.requires_grad()) return Relu6Bf16::apply(x);
  return at::hardtanh_(x, 0.0, 6.0);
}

Tensor activate(const Tensor& x, Act a, double alpha) {
  switch (a) {
    case Act::Linear: return x;
    case Act::Relu: return at::relu(x);
    case Act::Relu6: return reluSix(x);
    case Act::Sigmoid: return at::sigmoid(x);
    case Act::Tanh: return at::tanh(x);
    case Act::Softmax: return at::softmax(x.to(at::kFloat), lastAxis(x));  // in fp32 under bf16 too
    case Act::Elu: return at::elu(x);
    case Act::Swish: return at::silu(x);
    case Act::LeakyRelu: return at::leaky_relu(x, alpha);
    case Act::Softplus: return at::softplus(x);
  }
  return x;
}

enum class Layout { Plain, Conv, Depthwise };

struct Param {
  Tensor t;                      // ATen layout
  Tensor m, v;                   // AdamW moments (defined once the parameter has trained)
  int64_t step = 0;
  bool trainable = false;
  int group = 0;
  Layout layout = Layout::Plain;
  std::vector<int64_t> tfShape;  // tfjs layout, for the way back
};

// How a BatchNorm op trains: Inference normalizes with the moving statistics (a frozen layer,
// or one that keeps its statistics); Update normalizes with the batch's statistics and moves
// the moving averages toward them, as tfjs' BatchNormalization does in training.
enum class BnMode { Inference, Update };

enum class Kind { Input, Conv, SepConv, BatchNorm, Activation, Add, Multiply, Concat, Pad, MaxPool, AvgPool, GlobalAvg, GlobalMax, Flatten, Dense, Dropout, Reshape, Rescale };

struct Op {
  Kind kind = Kind::Input;
  std::vector<int> inputs;
  int w = -1, w2 = -1, b = -1;                // conv/dense weights and bias
  int gamma = -1, beta = -1, mean = -1, var = -1;
  std::vector<int64_t> stride{1, 1}, dilation{1, 1}, pad{0, 0, 0, 0}, kernel{1, 1}, shape;
  int64_t groups = 1;
  Act act = Act::Linear;
  double alpha = 0.2, eps = 1e-3, momentum = 0.99, rate = 0, scale = 1, offset = 0;
  BnMode bnMode = BnMode::Inference;
  bool keepDims = false;
  bool fullPrecision = false;  // a Dense that gives a model output: fp32 under bf16 (see headInFp32)
};

int64_t getInt(const Napi::Object& o, const char* k, int64_t dflt) {
  if (!o.Has(k) || o.Get(k).IsUndefined() || o.Get(k).IsNull()) return dflt;
  return o.Get(k).As<Napi::Number>().Int64Value();
}
double getNum(const Napi::Object& o, const char* k, double dflt) {
  if (!o.Has(k) || o.Get(k).IsUndefined() || o.Get(k).IsNull()) return dflt;
  return o.Get(k).As<Napi::Number>().DoubleValue();
}
std::vector<int64_t> getInts(const Napi::Object& o, const char* k, std::vector<int64_t> dflt) {
  if (!o.Has(k) || !o.Get(k).IsArray()) return dflt;
  auto a = o.Get(k).As<Napi::Array>();
  std::vector<int64_t> out;
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).As<Napi::Number>().Int64Value());
  return out;
}
std::string getStr(const Napi::Object& o, const char* k, const std::string& dflt = "") {
  if (!o.Has(k) || !o.Get(k).IsString()) return dflt;
  return o.Get(k).As<Napi::String>().Utf8Value();
}

Kind parseKind(const std::string& s) {
  static const std::pair<const char*, Kind> kinds[] = {
      {"input", Kind::Input}, {"conv", Kind::Conv}, {"sepconv", Kind::SepConv}, {"batchnorm", Kind::BatchNorm},
      {"activation", Kind::Activation}, {"add", Kind::Add}, {"multiply", Kind::Multiply}, {"concat", Kind::Concat},
      {"pad", Kind::Pad}, {"maxpool", Kind::MaxPool}, {"avgpool", Kind::AvgPool}, {"globalavg", Kind::GlobalAvg},
      {"globalmax", Kind::GlobalMax}, {"flatten", Kind::Flatten}, {"dense", Kind::Dense}, {"dropout", Kind::Dropout},
      {"reshape", Kind::Reshape}, {"rescale", Kind::Rescale}};
  for (auto& k : kinds) if (s == k.first) return k.second;
  throw std::runtime_error("unsupported op kind \"" + s + "\"");
}

// tfjs filter -> ATen weight, as a view: [kh, kw, in, out] -> [out, in, kh, kw]; depthwise
// [kh, kw, in, mult] -> [in * mult, 1, kh, kw] (output channel c * mult + m).
Tensor atenFilter(const Tensor& f, bool depthwise) {
  if (!depthwise) return f.permute({3, 2, 0, 1});
  auto s = f.sizes();
  return f.reshape({s[0], s[1], s[2] * s[3]}).permute({2, 0, 1}).unsqueeze(1);
}

// tfjs weight layout -> ATen layout (an owned copy), and back.
Tensor toAten(const Tensor& tf, Layout l) {
  if (l == Layout::Plain) return tf.clone();
  return atenFilter(tf, l == Layout::Depthwise).contiguous(at::MemoryFormat::ChannelsLast);
}

Tensor toTfjs(const Tensor& t, Layout l, const std::vector<int64_t>& tfShape) {
  switch (l) {
    case Layout::Plain: return t.contiguous();
    case Layout::Conv: return t.permute({2, 3, 1, 0}).contiguous();
    case Layout::Depthwise: return t.squeeze(1).permute({1, 2, 0}).contiguous().reshape(tfShape);
  }
  return t;
}

// Pads an NCHW tensor by [top, bottom, left, right] with `value`, keeping channels-last.
Tensor padNchw(const Tensor& x, const std::vector<int64_t>& pad, double value) {
  return at::constant_pad_nd(x, {pad[2], pad[3], pad[0], pad[1]}, value).contiguous(at::MemoryFormat::ChannelsLast);
}

// A new Float32Array holding `t`'s values in row-major order.
Napi::Float32Array floatArray(Napi::Env env, const Tensor& t) {
  Tensor c = t.contiguous();
  auto out = Napi::Float32Array::New(env, c.numel());
  std::memcpy(out.Data(), c.data_ptr<float>(), c.numel() * sizeof(float));
  return out;
}

// Runs `body` (returning a Napi::Value); a C++ exception becomes a JavaScript error "graft-native <what>: ...".
template <class F>
Napi::Value guarded(Napi::Env env, const char* what, F body) {
  try {
    return body();
  } catch (const std::exception& e) {
    Napi::Error::New(env, std::string("graft-native ") + what + ": " + e.what()).ThrowAsJavaScriptException();
    return env.Undefined();
  }
}

// The training loss: cross-entropy alone, or cross-entropy plus a term that keeps the old task
// (src/train/distill.ts, ewc.ts): distillation toward the old head's recorded outputs (LwF), or
// the EWC penalty on moving the weights the old task needs.
enum class LossKind { CrossEntropy, Distillation, Ewc };

// Which output distillation compares with the old head's recorded outputs: the model's second
// output (the old head kept beside the new one), or the first oldClasses columns of the one
// output (a head widened with the new classes), renormalized.
enum class DistillFrom { SecondOutput, OldColumns };

#ifndef GRAFT_NO_DIST
// ---- Data-parallel training: torch.distributed's c10d, Gloo backend, over a TCPStore ----------
// A Group is one worker's membership in a run of `worldSize` workers (src/engine/dist.ts). A
// Net given a Group (setGroup) trains its part of each global batch: the loss is the global
// batch's mean (each worker's sum over its samples / the global batch), gradients are summed
// across workers bucket by bucket while backward runs (as DDP's reducer does: hooks on the
// parameters launch an async all-reduce when a bucket's last gradient arrives), and every worker
// applies the same AdamW update, so the weights stay the same everywhere. BatchNorm layers that
// train normalize with the global batch's statistics (SyncBatchNorm), through a differentiable
// all-gather of each worker's mean, variance and count.

using c10d::ProcessGroup;

// An all-gather of one row per worker ([m] -> [world, m]) whose backward sums the incoming
// gradients across workers and keeps this worker's row: d(sum of every worker's loss)/d(row).
struct AllGatherRows : public torch::autograd::Function<AllGatherRows> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& row, int64_t pgAddress) {
    auto* pg = reinterpret_cast<ProcessGroup*>(pgAddress);
    ctx->saved_data["pg"] = pgAddress;
    int world = pg->getSize();
    std::vector<std::vector<Tensor>> outs(1);
    for (int r = 0; r < world; r++) outs[0].push_back(at::empty_like(row, at::MemoryFormat::Contiguous));
    std::vector<Tensor> in{row.contiguous()};
    pg->allgather(outs, in)->wait();
    return at::stack(outs[0]);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list g) {
    auto* pg = reinterpret_cast<ProcessGroup*>(ctx->saved_data["pg"].toInt());
    std::vector<Tensor> t{g[0].contiguous().clone()};
    pg->allreduce(t)->wait();
    return {t[0].select(0, pg->getRank()), Tensor()};
  }
};

class Group : public Napi::ObjectWrap<Group> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Define(Napi::Env env) {
    Napi::Function f = DefineClass(env, "Group", {
        InstanceMethod("set", &Group::Set),
        InstanceMethod("get", &Group::Get),
        InstanceMethod("allreduce", &Group::Allreduce),
        InstanceMethod("allgather", &Group::Allgather),
        InstanceMethod("broadcast", &Group::Broadcast),
        InstanceMethod("barrier", &Group::Barrier),
        InstanceMethod("close", &Group::Close),
    });
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }

  // new Group({ rank, worldSize, host, port, timeoutMs, bind, file? }): rank 0 serves the
  // TCPStore on port `port` (libtorch binds it to every interface), the others connect to
  // host:port; or, with `file`, every worker meets in that file (c10d's FileStore). Each binds
  // its Gloo connections to `bind`.
  explicit Group(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Group>(info) {
    Napi::Env env = info.Env();
    try {
      auto o = info[0].As<Napi::Object>();
      rank_ = (int)getInt(o, "rank", -1);
      size_ = (int)getInt(o, "worldSize", -1);
      std::string host = getStr(o, "host", "127.0.0.1");
      int64_t port = getInt(o, "port", 29500);
      auto timeout = std::chrono::milliseconds(getInt(o, "timeoutMs", 30000));
      std::string bind = getStr(o, "bind", "");
      if (size_ < 1 || rank_ < 0 || rank_ >= size_) throw std::runtime_error("rank " + std::to_string(rank_) + " of world size " + std::to_string(size_) + ": the rank must be 0.." + std::to_string(size_ - 1));
      if (port < 1 || port > 65535) throw std::runtime_error("port " + std::to_string(port) + " is not 1..65535");
      std::string file = getStr(o, "file", "");
      // A rendezvous that never answers (another program on that port accepts the connection
      // and says nothing) would block this thread for good: past twice the timeout, give up.
      std::mutex m;
      std::condition_variable cv;
      bool joined = false;
      std::thread watchdog([&, rank = rank_] {
        std::unique_lock<std::mutex> lock(m);
        if (!cv.wait_for(lock, timeout * 2 + std::chrono::seconds(5), [&] { return joined; })) {
          fprintf(stderr, "graft train: rank %d: the rendezvous at %s did not answer in %lld s; is another program listening there? Check --master (and --dist-timeout).\n",
                  rank, file.empty() ? (host.substr(0, 100) + ":" + std::to_string(port)).c_str() : file.substr(0, 200).c_str(), (long long)(timeout.count() * 2 / 1000 + 5));
          fflush(stderr);
          _exit(1);
        }
      });
      struct Join {
        std::mutex& m;
        std::condition_variable& cv;
        bool& joined;
        std::thread& t;
        ~Join() {
          { std::lock_guard<std::mutex> lock(m); joined = true; }
          cv.notify_all();
          t.join();
        }
      } join{m, cv, joined, watchdog};
      if (!file.empty()) {
        // A file store (graft train --workers: a private file in a 0700 folder): no port open to anyone.
        store_ = c10::make_intrusive<c10d::FileStore>(file, size_);
        store_->setTimeout(timeout);
      } else {
        c10d::TCPStoreOptions so;
        so.port = (uint16_t)port;
        so.isServer = rank_ == 0;
        so.numWorkers = size_;
        so.waitWorkers = true;
        so.timeout = timeout;
        store_ = c10::make_intrusive<c10d::TCPStore>(host, so);
      }
      auto po = c10d::ProcessGroupGloo::Options::create(timeout);
      po->devices.push_back(bind.empty() ? c10d::ProcessGroupGloo::createDefaultDevice() : c10d::ProcessGroupGloo::createDeviceForHostname(bind));
      po->threads = 2;
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>("graft", store_), rank_, size_, po);
    } catch (const std::exception& e) {
      Napi::Error::New(env, std::string("graft-native group: ") + e.what()).ThrowAsJavaScriptException();
    }
  }

  c10::intrusive_ptr<ProcessGroup> pg() const {
    if (!pg_) throw std::runtime_error("this group was closed");
    return pg_;
  }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg_;
  int rank_ = 0, size_ = 1;

  // set(key, value: string) in the TCPStore.
  Napi::Value Set(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), "store", [&]() -> Napi::Value {
      std::string v = info[1].As<Napi::String>().Utf8Value();
      store_->set(info[0].As<Napi::String>().Utf8Value(), std::vector<uint8_t>(v.begin(), v.end()));
      return info.Env().Undefined();
    });
  }

  // get(key) -> string, waiting up to the group's timeout for the key to be set.
  Napi::Value Get(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), "store", [&]() -> Napi::Value {
      auto v = store_->get(info[0].As<Napi::String>().Utf8Value());
      return Napi::String::New(info.Env(), std::string(v.begin(), v.end()));
    });
  }

  static Tensor wrap(const Napi::TypedArray& a) {
    if (a.TypedArrayType() == napi_float64_array) {
      auto d = a.As<Napi::Float64Array>();
      return at::from_blob(d.Data(), {(int64_t)d.ElementLength()}, at::kDouble);
    }
    if (a.TypedArrayType() == napi_float32_array) {
      auto f = a.As<Napi::Float32Array>();
      return at::from_blob(f.Data(), {(int64_t)f.ElementLength()}, at::kFloat);
    }
    throw std::runtime_error("expected a Float32Array or a Float64Array");
  }

  // allreduce(values, op: 'sum' | 'max' | 'min'): in place, every worker gets the result.
  Napi::Value Allreduce(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), "all-reduce", [&]() -> Napi::Value {
      std::vector<Tensor> t{wrap(info[0].As<Napi::TypedArray>())};
      std::string op = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "sum";
      c10d::AllreduceOptions o;
      o.reduceOp = op == "max" ? c10d::ReduceOp::MAX : op == "min" ? c10d::ReduceOp::MIN : c10d::ReduceOp::SUM;
      pg()->allreduce(t, o)->wait();
      return info.Env().Undefined();
    });
  }

  // allgather(values: Float32Array, out: Float32Array of worldSize x values.length): rank r's
  // values land at r x values.length.
  Napi::Value Allgather(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), "all-gather", [&]() -> Napi::Value {
      Tensor in = wrap(info[0].As<Napi::TypedArray>());
      Tensor out = wrap(info[1].As<Napi::TypedArray>());
      int64_t m = in.numel();
      if (out.numel() != m * size_ || out.scalar_type() != in.scalar_type()) throw std::runtime_error("the output needs worldSize x " + std::to_string(m) + " values of the input's type");
      std::vector<std::vector<Tensor>> outs(1);
      for (int r = 0; r < size_; r++) outs[0].push_back(out.narrow(0, r * m, m));
      std::vector<Tensor> ins{in};
      pg()->allgather(outs, ins)->wait();
      return info.Env().Undefined();
    });
  }

  // broadcast(values, root): in place.
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), "broadcast", [&]() -> Napi::Value {
      std::vector<Tensor> t{wrap(info[0].As<Napi::TypedArray>())};
      c10d::BroadcastOptions o;
      o.rootRank = info[1].As<Napi::Number>().Int32Value();
      pg()->broadcast(t, o)->wait();
      return info.Env().Undefined();
    });
  }

  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), "barrier", [&]() -> Napi::Value {
      pg()->barrier()->wait();
      return info.Env().Undefined();
    });
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    pg_.reset();
    store_.reset();
    return info.Env().Undefined();
  }
};
Napi::FunctionReference* Group::ctor = nullptr;

// Gradient buckets of a Net in a group: parameters in reverse order (backward reaches the last
// layers first), about 1 MB in the first bucket and 4 MB in the others, as DDP sizes them.
struct Bucket {
  std::vector<int> params;
  std::vector<int64_t> offsets;
  Tensor flat;
  int pending = 0;
  c10::intrusive_ptr<c10d::Work> work;
};
#endif

class Net : public Napi::ObjectWrap<Net> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Net", {
        InstanceMethod("trainStep", &Net::TrainStep),
        InstanceMethod("predict", &Net::Predict),
        InstanceMethod("getWeights", &Net::GetWeights),
        InstanceMethod("getOptimizerState", &Net::GetOptimizerState),
        InstanceMethod("setOptimizerState", &Net::SetOptimizerState),
        InstanceMethod("dispose", &Net::Dispose),
        InstanceMethod("setLoss", &Net::SetLoss),
        InstanceMethod("setGroup", &Net::SetGroup),
    });
  }

  // new Net(ops, params, { inputShape, output, beta1, beta2, epsilon, weightDecay, labelSmoothing })
  explicit Net(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Net>(info) {
    Napi::Env env = info.Env();
    try {
      auto ops = info[0].As<Napi::Array>();
      auto params = info[1].As<Napi::Array>();
      auto opt = info[2].As<Napi::Object>();
      inputShape_ = getInts(opt, "inputShape", {});
      output_ = (int)getInt(opt, "output", -1);
      output2_ = (int)getInt(opt, "output2", -1);
      beta1_ = getNum(opt, "beta1", 0.9);
      beta2_ = getNum(opt, "beta2", 0.999);
      epsilon_ = getNum(opt, "epsilon", 1e-7);
      weightDecay_ = getNum(opt, "weightDecay", 0);
      labelSmoothing_ = getNum(opt, "labelSmoothing", 0);
      std::string precision = getStr(opt, "precision", "fp32");
      if (precision != "fp32" && precision != "bf16") throw std::runtime_error("options.precision is \"" + precision + "\"; it must be \"fp32\" or \"bf16\"");
      bf16_ = precision == "bf16";
      for (uint32_t i = 0; i < params.Length(); i++) {
        auto p = params.Get(i).As<Napi::Object>();
        auto data = p.Get("data").As<Napi::Float32Array>();
        Param q;
        q.tfShape = getInts(p, "shape", {});
        int64_t n = 1;
        for (auto d : q.tfShape) n *= d;
        if (n != (int64_t)data.ElementLength()) throw std::runtime_error("parameter " + std::to_string(i) + " has " + std::to_string(data.ElementLength()) + " values, but its shape " + shapeText(q.tfShape) + " holds " + std::to_string(n));
        std::string layout = getStr(p, "layout", "plain");
        q.layout = layout == "conv" ? Layout::Conv : layout == "depthwise" ? Layout::Depthwise : Layout::Plain;
        Tensor tf = at::from_blob(data.Data(), q.tfShape, at::kFloat);
        q.t = toAten(tf, q.layout);
        q.trainable = p.Get("trainable").ToBoolean();
        q.group = (int)getInt(p, "group", 0);
        q.t.set_requires_grad(q.trainable);
        params_.push_back(std::move(q));
      }
      for (uint32_t i = 0; i < ops.Length(); i++) ops_.push_back(parseOp(ops.Get(i).As<Napi::Object>(), (int)i));
      int opCount = (int)ops_.size();
      if (output_ < 0 || output_ >= opCount) throw std::runtime_error("output is op " + std::to_string(output_) + ", but " + indexRange(opCount, "ops"));
      if (output2_ < -1 || output2_ >= opCount) throw std::runtime_error("output2 is op " + std::to_string(output2_) + ", but " + indexRange(opCount, "ops") + " (-1: no second output)");
      low_.assign(params_.size(), Tensor());
      readers_.assign(ops_.size(), 0);
      lastUse_.assign(ops_.size(), -1);
      for (size_t i = 0; i < ops_.size(); i++) {
        for (int j : ops_[i].inputs) {
          readers_[j]++;
          lastUse_[j] = (int)i;
        }
      }
      headInFp32(output_);
      headInFp32(output2_);
      fuseRelu6_.assign(ops_.size(), 0);
      fusedNow_.assign(ops_.size(), 0);
      for (size_t i = 0; i < ops_.size(); i++) {
        const Op& a = ops_[i];
        if (a.kind == Kind::Activation && a.act == Act::Relu6 && ops_[a.inputs[0]].kind == Kind::BatchNorm && readers_[a.inputs[0]] == 1 && a.inputs[0] != output_ && a.inputs[0] != output2_) fuseRelu6_[a.inputs[0]] = 1;
      }
      if (inputShape_.empty()) throw std::runtime_error("options.inputShape (one sample's shape) is missing");
    } catch (const std::exception& e) {
      Napi::Error::New(env, std::string("graft-native: ") + e.what()).ThrowAsJavaScriptException();
    }
  }

 private:
  std::vector<Op> ops_;
  std::vector<Param> params_;
  std::vector<int64_t> inputShape_;
  std::vector<int> readers_;  // how many ops read each op's output
  std::vector<int> lastUse_;  // the last op that reads each op's output (-1: none)
  // Training BatchNorm on bf16 takes in the ReLU6 that is its only reader (bn_bf16.h):
  // fuseRelu6_ marks the BatchNorm ops that can, fusedNow_ those that did in this forward.
  std::vector<char> fuseRelu6_, fusedNow_;
  int output_ = -1;
  int output2_ = -1;  // a second output (the old head, for distillation), or -1
  LossKind lossKind_ = LossKind::CrossEntropy;  // set by setLoss
  double lambda_ = 1, temperature_ = 2;
  DistillFrom distillFrom_ = DistillFrom::SecondOutput;
  int oldClasses_ = 0;
  std::vector<std::pair<int, std::pair<Tensor, Tensor>>> penalty_;  // param, (fisher, anchor)
  double beta1_, beta2_, epsilon_, weightDecay_, labelSmoothing_ = 0;
  // Mixed precision (precision "bf16"): convolutions and matrix products run in bf16 on
  // oneDNN, with their inputs, weights and outputs in bf16, and activations stay bf16 between
  // them. Weights, gradients and AdamW moments stay fp32 (the cast is in the graph, so each
  // gradient comes back to its fp32 master in fp32); BatchNorm normalizes bf16 activations with
  // fp32 statistics and parameters; softmax, the loss and the outputs are fp32.
  bool bf16_ = false;
  std::vector<Tensor> low_;  // bf16 copies of params not being trained in this call; dropped on update
#ifndef GRAFT_NO_DIST
  // Data-parallel training (setGroup): the group, the gradient buckets, and whether a step in the
  // group is running (BatchNorm then synchronizes, and gradient hooks fill the buckets).
  c10::intrusive_ptr<c10d::ProcessGroup> pg_;
  std::vector<Bucket> buckets_;
  std::vector<int> bucketOf_;       // each param's bucket (-1: not trainable)
  std::vector<int64_t> slotOf_;     // its offset in the bucket
  std::vector<char> arrived_;       // its gradient came in this step
  bool syncing_ = false;

  // A param's gradient, as backward computes it: into its bucket; a full bucket starts its all-reduce.
  void onGrad(int i, const Tensor& g) {
    if (!syncing_ || bucketOf_[i] < 0) return;
    at::NoGradGuard ng;
    Bucket& b = buckets_[bucketOf_[i]];
    b.flat.narrow(0, slotOf_[i], g.numel()).view(g.sizes()).copy_(g);
    arrived_[i] = 1;
    if (--b.pending == 0) launch(b);
  }
  void launch(Bucket& b) {
    std::vector<Tensor> t{b.flat};
    b.work = pg_->allreduce(t);
  }

  // BatchNorm that trains, across the group: the global batch's mean and biased variance from
  // each worker's (mean, variance, count) (Chan et al.'s pairwise combination), the moving
  // statistics updated with them as tfjs does; differentiable through AllGatherRows.
  Tensor syncBatchNorm(const Op& op, const Tensor& x) {
    Tensor& rm = params_[op.mean].t;
    Tensor& rv = params_[op.var].t;
    Tensor xf = x.scalar_type() == at::kFloat ? x : x.to(at::kFloat);
    std::vector<int64_t> dims = x.dim() == 4 ? std::vector<int64_t>{0, 2, 3} : std::vector<int64_t>{0};
    int64_t c = x.size(1);
    auto vm = at::var_mean(xf, dims, /*unbiased=*/false);
    Tensor row = at::cat({std::get<1>(vm), std::get<0>(vm), at::full({1}, (double)(x.numel() / c), xf.options())});
    Tensor all = AllGatherRows::apply(row, reinterpret_cast<int64_t>(pg_.get()));
    Tensor ms = all.narrow(1, 0, c), vs = all.narrow(1, c, c), ns = all.narrow(1, 2 * c, 1);
    Tensor total = ns.sum();
    Tensor mean = (ms * ns).sum(0) / total;
    Tensor var = ((vs + (ms - mean).square()) * ns).sum(0) / total;
    std::vector<int64_t> shape(x.dim(), 1);
    shape[1] = c;
    Tensor scale = (var + op.eps).rsqrt();
    if (op.gamma >= 0) scale = scale * P(op.gamma);
    Tensor y = (xf - mean.view(shape)) * scale.view(shape);
    if (op.beta >= 0) y = y + P(op.beta).view(shape);
    {
      at::NoGradGuard ng;
      rm.sub_((rm - mean.detach()).mul_(1 - op.momentum));
      rv.sub_((rv - var.detach()).mul_(1 - op.momentum));
    }
    return x.scalar_type() == at::kFloat ? y : y.to(x.scalar_type());
  }
#endif

  int paramIndex(const Napi::Object& o, const char* k, int op) {
    int i = (int)getInt(o, k, -1);
    if (i < -1 || i >= (int)params_.size()) throw std::runtime_error("op " + std::to_string(op) + ": " + k + " is param " + std::to_string(i) + ", but " + indexRange((int64_t)params_.size(), "params") + " (-1: none)");
    return i;
  }

  Op parseOp(const Napi::Object& o, int index) {
    Op op;
    op.kind = parseKind(getStr(o, "kind"));
    for (auto i : getInts(o, "inputs", {})) {
      if (i < 0 || i >= index) throw std::runtime_error("op " + std::to_string(index) + " reads op " + std::to_string(i) + ", which does not come before it");
      op.inputs.push_back((int)i);
    }
    if (op.kind != Kind::Input && op.inputs.empty()) throw std::runtime_error("op " + std::to_string(index) + " has no inputs");
    op.w = paramIndex(o, "w", index);
    op.w2 = paramIndex(o, "w2", index);
    op.b = paramIndex(o, "b", index);
    op.gamma = paramIndex(o, "gamma", index);
    op.beta = paramIndex(o, "beta", index);
    op.mean = paramIndex(o, "mean", index);
    op.var = paramIndex(o, "var", index);
    op.stride = getInts(o, "stride", {1, 1});
    op.dilation = getInts(o, "dilation", {1, 1});
    op.pad = getInts(o, "pad", {0, 0, 0, 0});
    op.kernel = getInts(o, "kernel", {1, 1});
    op.shape = getInts(o, "shape", {});
    op.groups = getInt(o, "groups", 1);
    op.act = parseAct(getStr(o, "act", "linear"));
    op.alpha = getNum(o, "alpha", 0.2);
    op.eps = getNum(o, "eps", 1e-3);
    op.momentum = getNum(o, "momentum", 0.99);
    op.rate = getNum(o, "rate", 0);
    op.scale = getNum(o, "scale", 1);
    op.offset = getNum(o, "offset", 0);
    op.bnMode = getStr(o, "mode", "inference") == "update" ? BnMode::Update : BnMode::Inference;
    op.keepDims = o.Has("keepDims") && o.Get("keepDims").ToBoolean();
    if ((op.kind == Kind::Conv || op.kind == Kind::SepConv || op.kind == Kind::Dense) && op.w < 0) throw std::runtime_error("op " + std::to_string(index) + " has no weight");
    if (op.kind == Kind::SepConv && op.w2 < 0) throw std::runtime_error("op " + std::to_string(index) + ": separable conv without a pointwise weight (w2)");
    if (op.kind == Kind::BatchNorm && (op.mean < 0 || op.var < 0)) throw std::runtime_error("op " + std::to_string(index) + ": batch norm without moving statistics (mean, var)");
    if (op.stride.size() != 2 || op.dilation.size() != 2 || op.pad.size() != 4 || op.kernel.size() != 2) throw std::runtime_error("op " + std::to_string(index) + ": stride, dilation and kernel need 2 values, pad 4");
    return op;
  }

  // Under bf16 the Dense layer that gives an output (the classifier, reached back from the output
  // through activations, dropout, flatten and reshape) stays fp32, as the pooling before it does:
  // its logits in bf16 (8 significant bits: steps of 1/16 at 10) flipped close calls between
  // classes, and it is a small share of the work.
  void headInFp32(int i) {
    while (i >= 0 && (ops_[i].kind == Kind::Activation || ops_[i].kind == Kind::Dropout || ops_[i].kind == Kind::Flatten || ops_[i].kind == Kind::Reshape)) i = ops_[i].inputs[0];
    if (i >= 0 && ops_[i].kind == Kind::Dense) ops_[i].fullPrecision = true;
  }

  Tensor P(int i) const { return i < 0 ? Tensor() : params_[i].t; }

  // A conv or dense weight (or bias) as its op computes with it: the fp32 param itself, or
  // under bf16 a bf16 copy: cast in the graph when the param trains in this call, else cached.
  Tensor W(int i) {
    if (i < 0) return Tensor();
    Param& p = params_[i];
    if (!bf16_) return p.t;
    if (p.t.requires_grad() && at::GradMode::is_enabled()) return p.t.to(at::kBFloat16);
    if (!low_[i].defined()) {
      c10::InferenceMode normal(false);  // a cache made during predict must serve training too
      at::NoGradGuard ng;
      low_[i] = p.t.to(at::kBFloat16);
    }
    return low_[i];
  }

  // An activation as a bf16 op takes it.
  Tensor low(const Tensor& x) const { return bf16_ && x.scalar_type() == at::kFloat ? x.to(at::kBFloat16) : x; }

  // Pads [top, bottom, left, right]; symmetric pads go to the conv itself.
  static Tensor padded(const Tensor& x, const std::vector<int64_t>& pad, double value, std::vector<int64_t>& inner) {
    if (pad[0] == pad[1] && pad[2] == pad[3]) {
      inner = {pad[0], pad[2]};
      return x;
    }
    inner = {0, 0};
    return padNchw(x, pad, value);
  }

  Tensor run(const Op& op, const std::vector<Tensor>& v, bool training) {
    const Tensor& x = v[op.inputs[0]];
    std::vector<int64_t> inner;
    switch (op.kind) {
      case Kind::Input: return x;
      case Kind::Conv: {
        Tensor in = padded(x, op.pad, 0, inner);
        Tensor y = at::conv2d(low(in), W(op.w), W(op.b), op.stride, inner, op.dilation, op.groups);
        // The conv's backward reads its input and weight, not its output.
        return op.act == Act::Relu || op.act == Act::Relu6 ? activateInPlace(y, op.act) : activate(y, op.act, op.alpha);
      }
      case Kind::SepConv: {
        Tensor in = padded(x, op.pad, 0, inner);
        Tensor d = at::conv2d(low(in), W(op.w), Tensor(), op.stride, inner, op.dilation, in.size(1));
        return activate(at::conv2d(d, W(op.w2), W(op.b)), op.act, op.alpha);
      }
      case Kind::BatchNorm: {
        Tensor& rm = params_[op.mean].t;
        Tensor& rv = params_[op.var].t;
        int self = (int)(&op - ops_.data());
        fusedNow_[self] = 0;
        if (training && op.bnMode == BnMode::Update) {
#ifndef GRAFT_NO_DIST
          if (syncing_) return syncBatchNorm(op, x);
#endif
          if (bf16_ && bnbf16::fits(x) && !noFusedBn()) {
            auto constant = [&](double v) { return at::full({x.size(1)}, v, rm.options()); };
            bool fuse = fuseRelu6_[self];
            auto t = bnbf16::train(x, op.gamma >= 0 ? P(op.gamma) : constant(1), op.beta >= 0 ? P(op.beta) : constant(0), op.eps, fuse);
            at::NoGradGuard ng;
            rm.sub_((rm - t.mean).mul_(1 - op.momentum));
            rv.sub_((rv - t.var).mul_(1 - op.momentum));
            fusedNow_[self] = fuse;
            return t.y;
          }
          auto out = at::native_batch_norm(x, P(op.gamma), P(op.beta), Tensor(), Tensor(), true, 0.0, op.eps);
          at::NoGradGuard ng;
          Tensor batchVar = std::get<2>(out).pow(-2).sub_(op.eps);
          // tfjs: moving -= (moving - batch) * (1 - momentum), with the biased batch variance.
          rm.sub_((rm - std::get<1>(out)).mul_(1 - op.momentum));
          rv.sub_((rv - batchVar).mul_(1 - op.momentum));
          return std::get<0>(out);
        }
        return at::batch_norm(x, P(op.gamma), P(op.beta), rm, rv, false, 0.0, op.eps, false);
      }
      case Kind::Activation: {
        int from = op.inputs[0];
        if (fusedNow_[from]) return x;  // its batch norm applied it (bn_bf16.h)
        Kind k = ops_[from].kind;
        // In place when this op is the only reader and the producer's backward does not need
        // its output (batch norm, linear conv or dense, add); autograd checks it either way.
        bool linearProducer = (k == Kind::BatchNorm || k == Kind::Add || ((k == Kind::Conv || k == Kind::Dense) && ops_[from].act == Act::Linear));
        if ((op.act == Act::Relu || op.act == Act::Relu6) && readers_[from] == 1 && from != output_ && from != output2_ && linearProducer) return activateInPlace(x, op.act);
        return activate(x, op.act, op.alpha);
      }
      case Kind::Add: {
        Tensor s = x;
        for (size_t i = 1; i < op.inputs.size(); i++) s = s + v[op.inputs[i]];
        return s;
      }
      case Kind::Multiply: {
        Tensor s = x;
        for (size_t i = 1; i < op.inputs.size(); i++) s = s * v[op.inputs[i]];
        return s;
      }
      case Kind::Concat: {
        std::vector<Tensor> parts;
        bool mixed = false;
        for (int i : op.inputs) mixed |= v[i].scalar_type() != x.scalar_type();
        for (int i : op.inputs) parts.push_back(mixed ? v[i].to(at::kFloat) : v[i]);
        return at::cat(parts, lastAxis(x));
      }
      case Kind::Pad: return padNchw(x, op.pad, 0);
      case Kind::MaxPool: {
        Tensor in = padded(x, op.pad, -std::numeric_limits<double>::infinity(), inner);
        return at::max_pool2d(in, op.kernel, op.stride, inner);
      }
      case Kind::AvgPool: {
        if (op.pad[0] != op.pad[1] || op.pad[2] != op.pad[3]) throw std::runtime_error("average pooling with uneven 'same' padding is not supported natively");
        return at::avg_pool2d(x, op.kernel, op.stride, {op.pad[0], op.pad[2]}, false, false);
      }
      case Kind::GlobalAvg: return x.scalar_type() == at::kFloat ? x.mean({2, 3}, op.keepDims) : x.mean({2, 3}, op.keepDims, at::kFloat);  // a reduction: fp32 under bf16
      case Kind::GlobalMax: return x.amax({2, 3}, op.keepDims);
      case Kind::Flatten: return (x.dim() == 4 ? x.permute({0, 2, 3, 1}) : x).reshape({x.size(0), -1});
      case Kind::Dense: {
        if (x.dim() != 2) throw std::runtime_error("Dense on a tensor of rank " + std::to_string(x.dim()) + " is not supported natively");
        Tensor y;
        if (bf16_ && op.fullPrecision) {
          Tensor in = x.to(at::kFloat);
          y = op.b >= 0 ? at::addmm(P(op.b), in, P(op.w)) : at::mm(in, P(op.w));
        } else {
          y = op.b >= 0 ? at::addmm(W(op.b), low(x), W(op.w)) : at::mm(low(x), W(op.w));
        }
        return activate(y, op.act, op.alpha);
      }
      case Kind::Dropout: return op.rate > 0 ? at::dropout(x, op.rate, training) : x;
      case Kind::Reshape: {
        Tensor t = x.dim() == 4 ? x.permute({0, 2, 3, 1}) : x;
        std::vector<int64_t> s{x.size(0)};
        s.insert(s.end(), op.shape.begin(), op.shape.end());
        Tensor r = t.reshape(s);
        return r.dim() == 4 ? r.permute({0, 3, 1, 2}) : r;
      }
      case Kind::Rescale: return x * op.scale + op.offset;
    }
    return x;
  }

  Tensor forward(const Tensor& x, bool training, Tensor* second = nullptr) {
    if (ops_.empty()) throw std::runtime_error("this model was disposed");
    std::vector<Tensor> v(ops_.size());
    for (size_t i = 0; i < ops_.size(); i++) {
      if (ops_[i].kind == Kind::Input) v[i] = x;
      else v[i] = run(ops_[i], v, training);
      // Free what no later op reads (autograd keeps what backward needs).
      for (int j : ops_[i].inputs) if (lastUse_[j] == (int)i && j != output_ && j != output2_) v[j] = Tensor();
    }
    if (second) *second = output2_ >= 0 ? v[output2_].to(at::kFloat) : Tensor();
    return v[output_].to(at::kFloat);
  }

  Tensor input(Napi::Float32Array data, int64_t n) {
    int64_t per = 1;
    for (auto d : inputShape_) per *= d;
    if (n <= 0) throw std::runtime_error("a batch needs at least one sample");
    if ((int64_t)data.ElementLength() != n * per) throw std::runtime_error("input has " + std::to_string(data.ElementLength()) + " values; " + std::to_string(n) + " samples need " + std::to_string(n * per));
    std::vector<int64_t> s{n};
    s.insert(s.end(), inputShape_.begin(), inputShape_.end());
    Tensor t = at::from_blob(data.Data(), s, at::kFloat);
    return t.dim() == 4 ? t.permute({0, 3, 1, 2}) : t;  // NHWC bytes seen as channels-last NCHW
  }

  static Napi::Float32Array toJs(Napi::Env env, const Tensor& y) {
    return floatArray(env, y.dim() == 4 ? y.permute({0, 2, 3, 1}) : y);
  }

  // predict(x: Float32Array, n) -> Float32Array (outputs in tfjs layout)
  Napi::Value Predict(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), "predict", [&]() -> Napi::Value {
      c10::InferenceMode inference;  // lighter than NoGradGuard: no version counters or view tracking
      Tensor x = input(info[0].As<Napi::Float32Array>(), info[1].As<Napi::Number>().Int64Value());
      return toJs(info.Env(), forward(x, false));
    });
  }

  // trainStep(x, n, labels: Int32Array, lrs: Float64Array, seed, classWeights?: Float32Array,
  //           distillTargets?: Float32Array, dist?: { globalN, pause })
  //   -> { loss, correct, pause }; no update when the loss is not finite.
  // In a group (setGroup) with `dist`, x is this worker's part of a global batch of globalN
  // samples: loss and correct are the global batch's, and pause is true when any worker asked.
  Napi::Value TrainStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    // Gradients are dropped when the step ends, normally or by an error.
    struct DropGrads {
      std::vector<Param>& params;
      ~DropGrads() { for (auto& p : params) if (p.t.grad().defined()) p.t.mutable_grad().reset(); }
    } drop{params_};
    return guarded(env, "train step", [&]() -> Napi::Value {
      int64_t n = info[1].As<Napi::Number>().Int64Value();
      Tensor x = input(info[0].As<Napi::Float32Array>(), n);
      auto labelsJs = info[2].As<Napi::Int32Array>();
      auto lrs = info[3].As<Napi::Float64Array>();
      int64_t seed = info[4].As<Napi::Number>().Int64Value();
      if ((int64_t)labelsJs.ElementLength() != n) throw std::runtime_error(std::to_string(labelsJs.ElementLength()) + " labels for " + std::to_string(n) + " samples");
      bool dist = false;
      int64_t globalN = n;
      double pauseWish = 0;
#ifndef GRAFT_NO_DIST
      struct Syncing {
        bool& on;
        ~Syncing() { on = false; }
      } syncingOff{syncing_};
      if (info.Length() > 7 && info[7].IsObject()) {
        if (!pg_) throw std::runtime_error("a distributed step (dist) in a net without a group: call setGroup first");
        auto d = info[7].As<Napi::Object>();
        dist = true;
        globalN = getInt(d, "globalN", n);
        pauseWish = d.Get("pause").ToBoolean() ? 1 : 0;
        if (globalN < n) throw std::runtime_error("dist.globalN " + std::to_string(globalN) + " is below this worker's " + std::to_string(n) + " samples");
        syncing_ = true;
        for (auto& b : buckets_) {
          b.pending = (int)b.params.size();
          b.work.reset();
        }
        std::fill(arrived_.begin(), arrived_.end(), 0);
        if (seed > 0) seed += 7919 * (int64_t)pg_->getRank();  // each worker's own dropout masks
      }
#endif
      if (seed > 0) at::manual_seed(seed);
      Tensor second;
      // GRAFT_NATIVE_PROFILE=<file>: a Chrome trace of every ATen op of each step (last step wins).
      std::unique_ptr<torch::autograd::profiler::RecordProfile> profile;
      if (const char* path = getenv("GRAFT_NATIVE_PROFILE")) profile = std::make_unique<torch::autograd::profiler::RecordProfile>(std::string(path));
      auto t0 = std::chrono::steady_clock::now();
      Tensor probs = forward(x, true, &second);
      if (probs.dim() != 2) throw std::runtime_error("the output has rank " + std::to_string(probs.dim()) + "; training needs [batch, classes] class probabilities");
      int64_t k = probs.size(1);
      for (size_t i = 0; i < labelsJs.ElementLength(); i++) {
        if (labelsJs[i] < 0 || labelsJs[i] >= k) throw std::runtime_error("label " + std::to_string(labelsJs[i]) + " outside 0.." + std::to_string(k - 1));
      }
      Tensor y = at::from_blob(labelsJs.Data(), {n}, at::kInt).to(at::kLong);
      Tensor perSample = probs.gather(1, y.unsqueeze(1)).squeeze(1).clamp(1e-7, 1.0).log().neg();
      // Label smoothing (loop.ts' crossEntropy): the target is (1 - e) one-hot + e / k.
      if (labelSmoothing_ > 0) perSample = perSample * (1 - labelSmoothing_) + probs.clamp(1e-7, 1.0).log().neg().mean(1) * labelSmoothing_;
      if (info.Length() > 5 && info[5].IsTypedArray()) {
        auto cw = info[5].As<Napi::Float32Array>();
        if ((int64_t)cw.ElementLength() != k) throw std::runtime_error(std::to_string(cw.ElementLength()) + " class weights for " + std::to_string(k) + " classes");
        perSample = perSample * at::from_blob(cw.Data(), {k}, at::kFloat).index_select(0, y);
      }
      Tensor loss = perSample.mean();
      if (lossKind_ == LossKind::Distillation) {
        if (info.Length() < 7 || !info[6].IsTypedArray()) throw std::runtime_error("distillation needs the batch's recorded old-head outputs");
        auto t = info[6].As<Napi::Float32Array>();
        if ((int64_t)t.ElementLength() != n * oldClasses_) throw std::runtime_error("distillation targets: " + std::to_string(t.ElementLength()) + " values for " + std::to_string(n) + " x " + std::to_string(oldClasses_));
        Tensor current;
        if (distillFrom_ == DistillFrom::SecondOutput) {
          current = second;  // defined: setLoss refuses this source without a second output
          if (current.dim() != 2 || current.size(1) != oldClasses_) throw std::runtime_error("distillation: the second output has shape " + shapeText(current.sizes().vec()) + ", not [batch, " + std::to_string(oldClasses_) + "] old-class probabilities");
        } else {
          if (oldClasses_ > k) throw std::runtime_error("distillation from the first " + std::to_string(oldClasses_) + " columns, but the output has only " + std::to_string(k));
          Tensor old = probs.narrow(1, 0, oldClasses_);
          current = old / old.sum(1, true);
        }
        // log softmax(log(p) / T): softened probabilities (distill.ts' logSoften).
        auto logSoften = [&](const Tensor& p) { return at::log_softmax(at::log(at::clamp_min(p, 1e-30)) / temperature_, 1); };
        Tensor target = logSoften(at::from_blob(t.Data(), {n, oldClasses_}, at::kFloat)).exp();
        loss = loss + (target * logSoften(current)).sum(1).mean().neg() * lambda_;
      }
      // In a group, this worker's share of the global batch's mean: its sum / globalN (and the
      // EWC penalty, which does not depend on the batch, a 1/world share).
      int world = 1;
      if (dist) {
        loss = loss * ((double)n / (double)globalN);
#ifndef GRAFT_NO_DIST
        world = pg_->getSize();
#endif
      }
      if (lossKind_ == LossKind::Ewc) {
        Tensor pen = at::zeros({}, at::kFloat);
        for (auto& [i, fa] : penalty_) pen = pen + (fa.first * (params_[i].t - fa.second).square()).sum();
        loss = loss + pen * (lambda_ / 2 / world);
      }
      double correct = (probs.detach().argmax(1) == y).sum().item<double>();
      double lossValue = loss.item<double>();
      double allreduceMs = 0;
#ifndef GRAFT_NO_DIST
      if (dist) {
        // Every worker decides alike: on the global loss, and pauses when any of them asked.
        Tensor stats = at::tensor(std::vector<double>{lossValue, correct, pauseWish}, at::kDouble);
        std::vector<Tensor> t{stats};
        pg_->allreduce(t)->wait();
        lossValue = stats[0].item<double>();
        correct = stats[1].item<double>();
        pauseWish = stats[2].item<double>();
      }
#endif
      auto t1 = std::chrono::steady_clock::now(), t2 = t1, t3 = t1;
      if (std::isfinite(lossValue)) {
        loss.backward();
#ifndef GRAFT_NO_DIST
        if (dist) {
          // Buckets whose params got no gradient this step (none, in the usual graph) go now,
          // zero-filled; then every all-reduce is waited for and its sums become the gradients.
          auto w0 = std::chrono::steady_clock::now();
          for (auto& b : buckets_) {
            if (b.pending == 0) continue;
            for (size_t k = 0; k < b.params.size(); k++) {
              int i = b.params[k];
              if (!arrived_[i]) b.flat.narrow(0, b.offsets[k], params_[i].t.numel()).zero_();
            }
            b.pending = 0;
            launch(b);
          }
          at::NoGradGuard ng;
          for (auto& b : buckets_) {
            b.work->wait();
            for (size_t k = 0; k < b.params.size(); k++) {
              int i = b.params[k];
              if (arrived_[i]) params_[i].t.mutable_grad().copy_(b.flat.narrow(0, b.offsets[k], params_[i].t.numel()).view(params_[i].t.sizes()));
            }
          }
          allreduceMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count();
          syncing_ = false;
        }
#endif
        t2 = std::chrono::steady_clock::now();
        update(lrs);
        t3 = std::chrono::steady_clock::now();
      }
      auto out = Napi::Object::New(env);
      out.Set("loss", lossValue);
      out.Set("correct", correct);
      auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
      out.Set("forwardMs", ms(t0, t1));
      out.Set("backwardMs", ms(t1, t2));
      out.Set("updateMs", ms(t2, t3));
      if (dist) {
        out.Set("pause", pauseWish > 0);
        out.Set("allreduceWaitMs", allreduceMs);
      }
      return out;
    });
  }

  // Graft's AdamW (src/train/optimizer.ts): bias-corrected Adam, epsilon outside the square
  // root, decoupled weight decay on weights of rank > 1.
  void update(const Napi::Float64Array& lrs) {
    at::NoGradGuard ng;
    for (auto& p : params_) {
      if (!p.trainable || !p.t.grad().defined()) continue;
      if (p.group < 0 || p.group >= (int)lrs.ElementLength()) throw std::runtime_error("no learning rate for group " + std::to_string(p.group));
      double lr = lrs[p.group];
      const Tensor& g = p.t.grad();
      if (!p.m.defined()) {
        p.m = at::zeros_like(p.t);
        p.v = at::zeros_like(p.t);
      }
      p.step++;
      double c1 = 1 - std::pow(beta1_, (double)p.step);
      double c2 = 1 - std::pow(beta2_, (double)p.step);
      p.m.mul_(beta1_).add_(g, 1 - beta1_);
      p.v.mul_(beta2_).addcmul_(g, g, 1 - beta2_);
      Tensor denom = (p.v / c2).sqrt_().add_(epsilon_);
      if (weightDecay_ > 0 && p.t.dim() > 1) p.t.mul_(1 - lr * weightDecay_);
      p.t.addcdiv_(p.m, denom, -lr / c1);
      low_[&p - params_.data()] = Tensor();
    }
  }

  // getWeights() -> Float32Array[] in tfjs layout, in the order the params were given.
  Napi::Value GetWeights(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (ops_.empty()) {
      Napi::Error::New(env, "graft-native: this model was disposed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto out = Napi::Array::New(env, params_.size());
    at::NoGradGuard ng;
    for (size_t i = 0; i < params_.size(); i++) {
      out.Set(i, floatArray(env, toTfjs(params_[i].t.detach(), params_[i].layout, params_[i].tfShape)));
    }
    return out;
  }

  // getOptimizerState() -> ({ step, m, v } | null)[] in tfjs layout.
  Napi::Value GetOptimizerState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto out = Napi::Array::New(env, params_.size());
    for (size_t i = 0; i < params_.size(); i++) {
      const Param& p = params_[i];
      if (!p.m.defined()) { out.Set(i, env.Null()); continue; }
      auto s = Napi::Object::New(env);
      s.Set("step", (double)p.step);
      s.Set("m", floatArray(env, toTfjs(p.m, p.layout, p.tfShape)));
      s.Set("v", floatArray(env, toTfjs(p.v, p.layout, p.tfShape)));
      out.Set(i, s);
    }
    return out;
  }

  // setOptimizerState(index, step, m, v) with m and v in tfjs layout.
  Napi::Value SetOptimizerState(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), "optimizer state", [&]() -> Napi::Value {
      int64_t i = info[0].As<Napi::Number>().Int64Value();
      if (i < 0 || i >= (int64_t)params_.size()) throw std::runtime_error("no param " + std::to_string(i) + ": " + indexRange((int64_t)params_.size(), "params"));
      Param& p = params_[i];
      auto m = info[2].As<Napi::Float32Array>();
      auto v = info[3].As<Napi::Float32Array>();
      if ((int64_t)m.ElementLength() != p.t.numel() || (int64_t)v.ElementLength() != p.t.numel()) throw std::runtime_error("param " + std::to_string(i) + ": moments of " + std::to_string(m.ElementLength()) + " and " + std::to_string(v.ElementLength()) + " values for a parameter of " + std::to_string(p.t.numel()));
      p.step = info[1].As<Napi::Number>().Int64Value();
      p.m = toAten(at::from_blob(m.Data(), p.tfShape, at::kFloat), p.layout);
      p.v = toAten(at::from_blob(v.Data(), p.tfShape, at::kFloat), p.layout);
      return info.Env().Undefined();
    });
  }

  // setLoss({ kind: 'lwf', lambda, temperature, from: 'second-output' | 'old-columns', oldClasses })
  // setLoss({ kind: 'ewc', lambda, terms: [{ param, fisher, anchor }] }) (tfjs layouts)
  Napi::Value SetLoss(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), "loss", [&]() -> Napi::Value {
      auto o = info[0].As<Napi::Object>();
      std::string kind = getStr(o, "kind");
      lambda_ = getNum(o, "lambda", 1);
      penalty_.clear();
      if (kind == "lwf") {
        lossKind_ = LossKind::Distillation;
        temperature_ = getNum(o, "temperature", 2);
        distillFrom_ = getStr(o, "from") == "old-columns" ? DistillFrom::OldColumns : DistillFrom::SecondOutput;
        oldClasses_ = (int)getInt(o, "oldClasses", 0);
        if (oldClasses_ <= 0) throw std::runtime_error("distillation needs oldClasses, the number of old classes (at least 1)");
        if (distillFrom_ == DistillFrom::SecondOutput && output2_ < 0) throw std::runtime_error("distillation from the second output (from: 'second-output'), but the model has no second output: give the model its old head as a second output, or distill from the first oldClasses columns of the one output (from: 'old-columns')");
      } else if (kind == "ewc") {
        lossKind_ = LossKind::Ewc;
        auto terms = o.Get("terms").As<Napi::Array>();
        for (uint32_t k = 0; k < terms.Length(); k++) {
          auto t = terms.Get(k).As<Napi::Object>();
          int i = (int)getInt(t, "param", -1);
          if (i < 0 || i >= (int)params_.size()) throw std::runtime_error("EWC term " + std::to_string(k) + " is for param " + std::to_string(i) + ", but " + indexRange((int64_t)params_.size(), "params"));
          Param& p = params_[i];
          auto f = t.Get("fisher").As<Napi::Float32Array>();
          auto a = t.Get("anchor").As<Napi::Float32Array>();
          if ((int64_t)f.ElementLength() != p.t.numel() || (int64_t)a.ElementLength() != p.t.numel()) throw std::runtime_error("EWC term " + std::to_string(k) + ": fisher of " + std::to_string(f.ElementLength()) + " and anchor of " + std::to_string(a.ElementLength()) + " values for param " + std::to_string(i) + " of " + std::to_string(p.t.numel()));
          penalty_.push_back({i, {toAten(at::from_blob(f.Data(), p.tfShape, at::kFloat), p.layout), toAten(at::from_blob(a.Data(), p.tfShape, at::kFloat), p.layout)}});
        }
      } else if (kind == "ce") {
        lossKind_ = LossKind::CrossEntropy;
      } else {
        throw std::runtime_error("unknown loss \"" + kind + "\" (known: \"ce\", \"lwf\", \"ewc\")");
      }
      return info.Env().Undefined();
    });
  }

  // setGroup(group): train as one worker of the group (see Group); the gradient buckets are laid
  // out over the params that train, and each gets a hook that fills its bucket in backward.
  Napi::Value SetGroup(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), "group", [&]() -> Napi::Value {
#ifdef GRAFT_NO_DIST
      throw std::runtime_error("this build of the native engine has no distributed training (libgloo-dev was missing when it was built)");
#else
      if (pg_) throw std::runtime_error("this net is in a group already");
      if (!info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(Group::ctor->Value())) throw std::runtime_error("setGroup needs a Group");
      pg_ = Group::Unwrap(info[0].As<Napi::Object>())->pg();
      bucketOf_.assign(params_.size(), -1);
      slotOf_.assign(params_.size(), 0);
      arrived_.assign(params_.size(), 0);
      int64_t cap = (1 << 20) / 4, used = 0;  // floats: 1 MB in the first bucket, then 4 MB
      for (int i = (int)params_.size() - 1; i >= 0; i--) {
        if (!params_[i].trainable) continue;
        int64_t numel = params_[i].t.numel();
        if (buckets_.empty() || (used > 0 && used + numel > cap)) {
          if (!buckets_.empty()) cap = (4 << 20) / 4;
          buckets_.emplace_back();
          used = 0;
        }
        Bucket& b = buckets_.back();
        bucketOf_[i] = (int)buckets_.size() - 1;
        slotOf_[i] = used;
        b.params.push_back(i);
        b.offsets.push_back(used);
        used += numel;
      }
      for (auto& b : buckets_) {
        int64_t total = 0;
        for (int i : b.params) total += params_[i].t.numel();
        b.flat = at::zeros({total}, at::kFloat);
      }
      for (int i = 0; i < (int)params_.size(); i++) {
        if (bucketOf_[i] >= 0) params_[i].t.register_hook([this, i](const Tensor& g) { onGrad(i, g); });
      }
      return info.Env().Undefined();
#endif
    });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
#ifndef GRAFT_NO_DIST
    buckets_.clear();
    pg_.reset();
#endif
    params_.clear();
    ops_.clear();
    return info.Env().Undefined();
  }
};


// ---- Per-op kernels for the tfjs wasm backend (src/engine/native-kernels.ts) ----------------
// Each reads its inputs from and writes its output into Float32Arrays that view the wasm heap
// (no copies in or out of JavaScript). Shapes are tfjs': NHWC activations, [kh, kw, in, out]
// filters, [kh, kw, in, multiplier] depthwise filters. Attributes are spelled as in the Net's
// ops: stride and dilation [h, w], pad [top, bottom, left, right], act and alpha.

std::vector<int64_t> ints(const Napi::Value& v) {
  auto a = v.As<Napi::Array>();
  std::vector<int64_t> out;
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).As<Napi::Number>().Int64Value());
  return out;
}

Tensor view(Napi::Float32Array a, const std::vector<int64_t>& shape, const char* what) {
  int64_t n = 1;
  for (auto d : shape) {
    if (d < 0) throw std::runtime_error(std::string(what) + ": negative dimension in shape " + shapeText(shape));
    n *= d;
  }
  if ((int64_t)a.ElementLength() != n) throw std::runtime_error(std::string(what) + " has " + std::to_string(a.ElementLength()) + " values, but its shape " + shapeText(shape) + " holds " + std::to_string(n));
  return at::from_blob(a.Data(), shape, at::kFloat);
}

Tensor nchw(const Tensor& nhwc) { return nhwc.permute({0, 3, 1, 2}); }

struct ConvArgs {
  std::vector<int64_t> stride, pad, dilation;
  bool depthwise;
  std::vector<int64_t> inner{0, 0};
  bool uneven = false;
  void parse(const Napi::Object& o) {
    stride = ints(o.Get("stride"));
    pad = ints(o.Get("pad"));
    dilation = ints(o.Get("dilation"));
    depthwise = o.Get("depthwise").ToBoolean();
    if (stride.size() != 2 || pad.size() != 4 || dilation.size() != 2) throw std::runtime_error("stride and dilation need 2 values, pad 4");
    uneven = pad[0] != pad[1] || pad[2] != pad[3];
    inner = uneven ? std::vector<int64_t>{0, 0} : std::vector<int64_t>{pad[0], pad[2]};
  }
  Tensor padInput(const Tensor& x) const {  // x: NCHW
    return uneven ? padNchw(x, pad, 0) : x;
  }
};

void writeNhwc(Napi::Float32Array out, const std::vector<int64_t>& shape, const Tensor& y) {
  Tensor o = view(out, shape, "output");
  o.copy_(y.dim() == 4 ? y.permute({0, 2, 3, 1}) : y);
}

Tensor applyAct(Tensor y, const std::string& act, double alpha) {
  if (act.empty() || act == "linear") return y;
  if (act == "relu") return at::relu_(y);
  if (act == "relu6") return at::hardtanh_(y, 0.0, 6.0);
  if (act == "elu") return at::elu(y);
  if (act == "leakyrelu") return at::leaky_relu(y, alpha);
  if (act == "sigmoid") return at::sigmoid(y);
  throw std::runtime_error("unsupported fused activation " + act);
}

// Runs one kernel on its argument object without autograd; errors become JavaScript errors.
template <class F>
Napi::Value kernelCall(const Napi::CallbackInfo& info, const char* what, F body) {
  return guarded(info.Env(), what, [&]() -> Napi::Value {
    at::NoGradGuard ng;
    body(info[0].As<Napi::Object>());
    return info.Env().Undefined();
  });
}

// conv2d({ x, xShape, filter, filterShape, out, outShape, stride, pad, dilation, depthwise, bias?, act?, alpha? })
Napi::Value Conv2d(const Napi::CallbackInfo& info) {
  return kernelCall(info, "conv2d", [&](Napi::Object o) {
    ConvArgs c;
    c.parse(o);
    Tensor x = nchw(view(o.Get("x").As<Napi::Float32Array>(), ints(o.Get("xShape")), "x"));
    Tensor f = view(o.Get("filter").As<Napi::Float32Array>(), ints(o.Get("filterShape")), "filter");
    Tensor b = o.Has("bias") && o.Get("bias").IsTypedArray() ? view(o.Get("bias").As<Napi::Float32Array>(), {f.size(c.depthwise ? 2 : 3) * (c.depthwise ? f.size(3) : 1)}, "bias") : Tensor();
    int64_t groups = c.depthwise ? x.size(1) : 1;
    Tensor y = at::conv2d(c.padInput(x), atenFilter(f, c.depthwise), b, c.stride, c.inner, c.dilation, groups);
    y = applyAct(y, getStr(o, "act", "linear"), getNum(o, "alpha", 0.2));
    writeNhwc(o.Get("out").As<Napi::Float32Array>(), ints(o.Get("outShape")), y);
  });
}

// conv2dBackpropInput({ dy, dyShape, filter, filterShape, out (dx), outShape (x's), stride, pad, dilation, depthwise })
Napi::Value Conv2dBackpropInput(const Napi::CallbackInfo& info) {
  return kernelCall(info, "conv2d input gradient", [&](Napi::Object o) {
    ConvArgs c;
    c.parse(o);
    Tensor dy = nchw(view(o.Get("dy").As<Napi::Float32Array>(), ints(o.Get("dyShape")), "dy"));
    Tensor f = view(o.Get("filter").As<Napi::Float32Array>(), ints(o.Get("filterShape")), "filter");
    auto xs = ints(o.Get("outShape"));
    std::vector<int64_t> padded{xs[0], xs[3], xs[1] + (c.uneven ? c.pad[0] + c.pad[1] : 0), xs[2] + (c.uneven ? c.pad[2] + c.pad[3] : 0)};
    Tensor x = at::empty(padded, at::TensorOptions().dtype(at::kFloat)).contiguous(at::MemoryFormat::ChannelsLast);
    int64_t groups = c.depthwise ? xs[3] : 1;
    Tensor w = atenFilter(f, c.depthwise).contiguous(at::MemoryFormat::ChannelsLast);
    auto grads = at::convolution_backward(dy.contiguous(at::MemoryFormat::ChannelsLast), x, w, c10::nullopt, c.stride, c.inner, c.dilation, false, {0, 0}, groups, {true, false, false});
    Tensor dx = std::get<0>(grads);
    if (c.uneven) dx = dx.narrow(2, c.pad[0], xs[1]).narrow(3, c.pad[2], xs[2]);
    writeNhwc(o.Get("out").As<Napi::Float32Array>(), xs, dx);
  });
}

// conv2dBackpropFilter({ x, xShape, dy, dyShape, out (dw), outShape (filter's), stride, pad, dilation, depthwise })
Napi::Value Conv2dBackpropFilter(const Napi::CallbackInfo& info) {
  return kernelCall(info, "conv2d filter gradient", [&](Napi::Object o) {
    ConvArgs c;
    c.parse(o);
    Tensor x = c.padInput(nchw(view(o.Get("x").As<Napi::Float32Array>(), ints(o.Get("xShape")), "x"))).contiguous(at::MemoryFormat::ChannelsLast);
    Tensor dy = nchw(view(o.Get("dy").As<Napi::Float32Array>(), ints(o.Get("dyShape")), "dy")).contiguous(at::MemoryFormat::ChannelsLast);
    auto fs = ints(o.Get("outShape"));
    if (fs.size() != 4) throw std::runtime_error("the filter shape (outShape) needs 4 values, not " + shapeText(fs));
    std::vector<int64_t> ws = c.depthwise ? std::vector<int64_t>{fs[2] * fs[3], 1, fs[0], fs[1]} : std::vector<int64_t>{fs[3], fs[2], fs[0], fs[1]};
    Tensor w = at::empty(ws, at::TensorOptions().dtype(at::kFloat)).contiguous(at::MemoryFormat::ChannelsLast);
    int64_t groups = c.depthwise ? fs[2] : 1;
    auto grads = at::convolution_backward(dy, x, w, c10::nullopt, c.stride, c.inner, c.dilation, false, {0, 0}, groups, {false, true, false});
    Tensor dw = std::get<1>(grads);
    view(o.Get("out").As<Napi::Float32Array>(), fs, "output").copy_(toTfjs(dw, c.depthwise ? Layout::Depthwise : Layout::Conv, fs));
  });
}

// batchMatMul({ a, aShape [B, M, K], b, bShape, transposeA, transposeB, out, outShape, bias?, act?, alpha? })
// Batch dimensions broadcast when one of them is 1.
Napi::Value BatchMatMul(const Napi::CallbackInfo& info) {
  return kernelCall(info, "batchMatMul", [&](Napi::Object o) {
    Tensor a = view(o.Get("a").As<Napi::Float32Array>(), ints(o.Get("aShape")), "a");
    Tensor b = view(o.Get("b").As<Napi::Float32Array>(), ints(o.Get("bShape")), "b");
    if (o.Get("transposeA").ToBoolean()) a = a.transpose(1, 2);
    if (o.Get("transposeB").ToBoolean()) b = b.transpose(1, 2);
    Tensor y = at::matmul(a, b);
    if (o.Has("bias") && o.Get("bias").IsTypedArray()) {
      auto bias = o.Get("bias").As<Napi::Float32Array>();
      y.add_(at::from_blob(bias.Data(), {(int64_t)bias.ElementLength()}, at::kFloat));
    }
    y = applyAct(y, getStr(o, "act", "linear"), getNum(o, "alpha", 0.2));
    view(o.Get("out").As<Napi::Float32Array>(), ints(o.Get("outShape")), "output").copy_(y);
  });
}

// matmul64({ a, aRows, aCols, b, bCols, transposeA, out }): out = op(a) b in float64, with a
// [aRows, aCols] row-major and op(a) = a or its transpose; b [aCols or aRows, bCols]. The
// fitted head's L-BFGS objective (src/train/logistic.ts): its two products over the features.
Napi::Value Matmul64(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), "matmul64", [&]() -> Napi::Value {
    at::NoGradGuard ng;
    auto o = info[0].As<Napi::Object>();
    auto a = o.Get("a").As<Napi::Float64Array>();
    auto b = o.Get("b").As<Napi::Float64Array>();
    auto out = o.Get("out").As<Napi::Float64Array>();
    int64_t rows = getInt(o, "aRows", -1), cols = getInt(o, "aCols", -1), n = getInt(o, "bCols", -1);
    bool t = o.Get("transposeA").ToBoolean();
    int64_t inner = t ? rows : cols, outRows = t ? cols : rows;
    if (rows < 0 || cols < 0 || n < 0) throw std::runtime_error("aRows, aCols and bCols must be whole numbers of at least 0");
    if ((int64_t)a.ElementLength() != rows * cols) throw std::runtime_error("a has " + std::to_string(a.ElementLength()) + " values, not aRows x aCols = " + std::to_string(rows * cols));
    if ((int64_t)b.ElementLength() != inner * n) throw std::runtime_error("b has " + std::to_string(b.ElementLength()) + " values, not " + std::to_string(inner) + " x bCols = " + std::to_string(inner * n));
    if ((int64_t)out.ElementLength() != outRows * n) throw std::runtime_error("out has " + std::to_string(out.ElementLength()) + " values, not " + std::to_string(outRows * n));
    Tensor A = at::from_blob(a.Data(), {rows, cols}, at::kDouble);
    Tensor B = at::from_blob(b.Data(), {inner, n}, at::kDouble);
    Tensor O = at::from_blob(out.Data(), {outRows, n}, at::kDouble);
    at::mm_out(O, t ? A.t() : A, B);
    return info.Env().Undefined();
  });
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  at::set_num_threads((int)info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

// batchNormBf16({ x, shape: [n, h, w, c], gamma, beta, dy, eps, relu6, fused }): one training
// BatchNorm (+ ReLU6) on x rounded to bf16, forward and backward with dy (rounded to bf16), by
// bn_bf16.h's kernels (fused) or by ATen's ops, for the tests. Returns { y, dx (NHWC), dgamma,
// dbeta, mean, var, fused (whether the kernels ran) }.
Napi::Value BatchNormBf16(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), "batchNormBf16", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Napi::Object o = info[0].As<Napi::Object>();
    std::vector<int64_t> shape = ints(o.Get("shape"));
    if (shape.size() != 4) throw std::runtime_error("shape needs 4 values [n, h, w, c]");
    int64_t c = shape[3];
    Tensor x = nchw(view(o.Get("x").As<Napi::Float32Array>(), shape, "x")).to(at::kBFloat16).contiguous(at::MemoryFormat::ChannelsLast).requires_grad_(true);
    Tensor dy = nchw(view(o.Get("dy").As<Napi::Float32Array>(), shape, "dy")).to(at::kBFloat16).contiguous(at::MemoryFormat::ChannelsLast);
    Tensor gamma = view(o.Get("gamma").As<Napi::Float32Array>(), {c}, "gamma").clone().requires_grad_(true);
    Tensor beta = view(o.Get("beta").As<Napi::Float32Array>(), {c}, "beta").clone().requires_grad_(true);
    double eps = getNum(o, "eps", 1e-3);
    bool relu6 = o.Get("relu6").ToBoolean(), fused = o.Get("fused").ToBoolean() && bnbf16::fits(x);
    // One forward: the kernels' or ATen's (batch statistics and output).
    auto once = [&]() -> bnbf16::Trained {
      if (fused) return bnbf16::train(x, gamma, beta, eps, relu6);
      auto out = at::native_batch_norm(x, gamma, beta, Tensor(), Tensor(), true, 0.0, eps);
      Tensor y = std::get<0>(out);
      return {relu6 ? reluSix(y) : y, std::get<1>(out), std::get<2>(out).pow(-2).sub_(eps)};
    };
    // repeat: times forward and backward that many times more, for the kernels' cost alone (ms).
    int64_t repeat = getInt(o, "repeat", 0);
    double ms = 0;
    for (int64_t k = 0; k < repeat; k++) {
      auto t0 = std::chrono::steady_clock::now();
      once().y.backward(dy);
      ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      x.mutable_grad() = Tensor();
      gamma.mutable_grad() = Tensor();
      beta.mutable_grad() = Tensor();
    }
    auto [y, mean, var] = once();
    y.backward(dy);
    auto r = Napi::Object::New(env);
    r.Set("y", floatArray(env, y.detach().permute({0, 2, 3, 1}).to(at::kFloat)));
    r.Set("dx", floatArray(env, x.grad().permute({0, 2, 3, 1}).to(at::kFloat)));
    r.Set("dgamma", floatArray(env, gamma.grad()));
    r.Set("dbeta", floatArray(env, beta.grad()));
    r.Set("mean", floatArray(env, mean.detach()));
    r.Set("var", floatArray(env, var.detach()));
    r.Set("fused", fused);
    if (repeat > 0) r.Set("ms", ms / repeat);
    return r;
  });
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("threads", at::get_num_threads());
  o.Set("torch", std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." + std::to_string(TORCH_VERSION_PATCH));
  o.Set("mkldnn", at::hasMKLDNN());
  o.Set("fusedBatchNormBf16", bnbf16::available());  // bn_bf16.h's kernels run on this CPU
  // What this process's CPUID says (what oneDNN and the kernels above go by): /proc/cpuinfo can
  // say otherwise under an emulator or a VM that masks flags.
  __builtin_cpu_init();
  auto cpu = Napi::Object::New(env);
  cpu.Set("avx2", __builtin_cpu_supports("avx2") != 0);
  cpu.Set("avx512f", __builtin_cpu_supports("avx512f") != 0);
  cpu.Set("avx512bf16", __builtin_cpu_supports("avx512bf16") != 0);
  cpu.Set("avx512vnni", __builtin_cpu_supports("avx512vnni") != 0);
  cpu.Set("avxvnni", __builtin_cpu_supports("avxvnni") != 0);
  cpu.Set("amxbf16", __builtin_cpu_supports("amx-bf16") != 0);
  o.Set("cpu", cpu);
  // oneDNN's ISA (what it will use on this CPU, after ONEDNN_MAX_CPU_ISA): libdnnl is libtorch's
  // dependency, already loaded; its headers are not installed, so the C function is looked up.
  o.Set("onednnIsa", env.Null());
  if (void* lib = dlopen("libdnnl.so.2", RTLD_LAZY | RTLD_NOLOAD)) {
    if (auto isa = reinterpret_cast<int (*)()>(dlsym(lib, "dnnl_get_effective_cpu_isa"))) {
      // dnnl_cpu_isa_t in oneDNN 2.x (dnnl_types.h)
      static const std::pair<int, const char*> names[] = {
          {0x0, "all"}, {0x1, "sse41"}, {0x3, "avx"}, {0x7, "avx2"}, {0xf, "avx512_mic"}, {0x1f, "avx512_mic_4ops"},
          {0x27, "avx512_core"}, {0x67, "avx512_core_vnni"}, {0xe7, "avx512_core_bf16"}, {0x3e7, "avx512_core_amx"}, {0x407, "avx2_vnni"}};
      int v = isa();
      std::string name = "0x" + [&] { char b[16]; snprintf(b, sizeof b, "%x", v); return std::string(b); }();
      for (auto& [k, n] : names) if (k == v) name = n;
      o.Set("onednnIsa", name);
    }
    dlclose(lib);
  }
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Keep freed large blocks in the heap instead of returning them to the kernel: a training
  // step allocates and frees the same big activations every batch, and fresh pages each time
  // cost page faults. Measured on the MobileNetV2 fine-tune step: 43,403 minor page faults per
  // step without this, 17 with it, about 15% of a step (docs/engine.md, "Measured").
  if (!getenv("GRAFT_NATIVE_MALLOC_DEFAULT")) {
    mallopt(M_MMAP_THRESHOLD, 256 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 512 * 1024 * 1024);
  }
  exports.Set("Net", Net::Define(env));
#ifndef GRAFT_NO_DIST
  exports.Set("Group", Group::Define(env));
#endif
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("conv2d", Napi::Function::New(env, Conv2d));
  exports.Set("conv2dBackpropInput", Napi::Function::New(env, Conv2dBackpropInput));
  exports.Set("conv2dBackpropFilter", Napi::Function::New(env, Conv2dBackpropFilter));
  exports.Set("batchMatMul", Napi::Function::New(env, BatchMatMul));
  exports.Set("matmul64", Napi::Function::New(env, Matmul64));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("batchNormBf16", Napi::Function::New(env, BatchNormBf16));
  return exports;
}

}  // namespace

NODE_API_MODULE(graft_native, Init)
