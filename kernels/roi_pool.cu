// ROIPooling (Fast R-CNN) for caffe_fx::roi_pool on CUDA tensors (caffe_fx/ops/roi_pool.py).
//
// Written from rbgirshick/caffe-fast-rcnn src/caffe/layers/roi_pooling_layer.cu
// (ROIPoolForward; ppengtang/caffe has the same file): one thread per top element,
// round() of the scaled roi corners (half away from zero), inclusive ends, float bin sizes,
// floor/ceil bin edges clipped to the map, an empty bin gives 0 and argmax -1, and the max
// is the first one in row-major order that is > -FLT_MAX.
//
// The backward is Backward_cpu's, not ROIPoolBackward's: each top diff is added to its
// argmax (atomicAdd), so that CUDA and CPU agree with the oracle (Caffe's CPU code).
// ROIPoolBackward gathers per bottom element over the rois whose unclipped box holds it,
// and so drops the diff of a malformed roi (x2 < x1 after rounding), which its forward
// pools as a 1 x 1 roi.
//
// Compiled at run time by CuPy (NVRTC); tests compile it with `nvcc -ptx`.

// FLT_MAX without <cfloat>, which NVRTC does not ship.
#define CAFFE_FX_FLT_MAX 3.402823466e+38F

template <typename T>
__device__ void roi_pool_forward(const int nthreads, const T* bottom_data,
                                 const T spatial_scale, const int channels, const int height,
                                 const int width, const int pooled_height,
                                 const int pooled_width, const T* bottom_rois, T* top_data,
                                 int* argmax_data) {
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < nthreads;
       index += blockDim.x * gridDim.x) {
    // (n, c, ph, pw) is an element in the pooled output
    const int pw = index % pooled_width;
    const int ph = (index / pooled_width) % pooled_height;
    const int c = (index / pooled_width / pooled_height) % channels;
    const int n = index / pooled_width / pooled_height / channels;

    const T* roi = bottom_rois + n * 5;
    const int roi_batch_ind = roi[0];
    const int roi_start_w = round(roi[1] * spatial_scale);
    const int roi_start_h = round(roi[2] * spatial_scale);
    const int roi_end_w = round(roi[3] * spatial_scale);
    const int roi_end_h = round(roi[4] * spatial_scale);

    // Force malformed ROIs to be 1x1
    const int roi_width = max(roi_end_w - roi_start_w + 1, 1);
    const int roi_height = max(roi_end_h - roi_start_h + 1, 1);
    const T bin_size_h = static_cast<T>(roi_height) / static_cast<T>(pooled_height);
    const T bin_size_w = static_cast<T>(roi_width) / static_cast<T>(pooled_width);

    int hstart = static_cast<int>(floor(static_cast<T>(ph) * bin_size_h));
    int wstart = static_cast<int>(floor(static_cast<T>(pw) * bin_size_w));
    int hend = static_cast<int>(ceil(static_cast<T>(ph + 1) * bin_size_h));
    int wend = static_cast<int>(ceil(static_cast<T>(pw + 1) * bin_size_w));

    // Add roi offsets and clip to input boundaries
    hstart = min(max(hstart + roi_start_h, 0), height);
    hend = min(max(hend + roi_start_h, 0), height);
    wstart = min(max(wstart + roi_start_w, 0), width);
    wend = min(max(wend + roi_start_w, 0), width);
    const bool is_empty = (hend <= hstart) || (wend <= wstart);

    // Define an empty pooling region to be zero
    T maxval = is_empty ? T(0) : T(-CAFFE_FX_FLT_MAX);
    // If nothing is pooled, argmax = -1 causes nothing to be backprop'd
    int maxidx = -1;
    const T* plane = bottom_data + (static_cast<long long>(roi_batch_ind) * channels + c)
                                       * height * width;
    for (int h = hstart; h < hend; ++h) {
      for (int w = wstart; w < wend; ++w) {
        const int bottom_index = h * width + w;
        if (plane[bottom_index] > maxval) {
          maxval = plane[bottom_index];
          maxidx = bottom_index;
        }
      }
    }
    top_data[index] = maxval;
    argmax_data[index] = maxidx;
  }
}

template <typename T>
__device__ void roi_pool_backward(const int nthreads, const T* top_diff,
                                  const int* argmax_data, const T* bottom_rois,
                                  const int channels, const int height, const int width,
                                  const int pooled_height, const int pooled_width,
                                  T* bottom_diff) {
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < nthreads;
       index += blockDim.x * gridDim.x) {
    const int argmax = argmax_data[index];
    if (argmax < 0) {
      continue;
    }
    const int c = (index / pooled_width / pooled_height) % channels;
    const int n = index / pooled_width / pooled_height / channels;
    const int roi_batch_ind = bottom_rois[n * 5];
    atomicAdd(bottom_diff + (static_cast<long long>(roi_batch_ind) * channels + c)
                                * height * width + argmax,
              top_diff[index]);
  }
}

#define ROI_POOL_KERNELS(T, SUFFIX)                                                        \
  extern "C" __global__ void roi_pool_forward_##SUFFIX(                                    \
      const int nthreads, const T* bottom_data, const T spatial_scale, const int channels, \
      const int height, const int width, const int pooled_height, const int pooled_width,  \
      const T* bottom_rois, T* top_data, int* argmax_data) {                               \
    roi_pool_forward<T>(nthreads, bottom_data, spatial_scale, channels, height, width,     \
                        pooled_height, pooled_width, bottom_rois, top_data, argmax_data);  \
  }                                                                                        \
  extern "C" __global__ void roi_pool_backward_##SUFFIX(                                   \
      const int nthreads, const T* top_diff, const int* argmax_data, const T* bottom_rois, \
      const int channels, const int height, const int width, const int pooled_height,      \
      const int pooled_width, T* bottom_diff) {                                            \
    roi_pool_backward<T>(nthreads, top_diff, argmax_data, bottom_rois, channels, height,   \
                         width, pooled_height, pooled_width, bottom_diff);                 \
  }

ROI_POOL_KERNELS(float, float32)
ROI_POOL_KERNELS(double, float64)
