// PSROIPooling (R-FCN) for caffe_fx::psroi_pool on CUDA tensors (caffe_fx/ops/psroi_pool.py).
//
// Written from ppengtang/caffe src/caffe/layers/psroi_pooling_layer.cu (PSROIPoolingForward,
// PSROIPoolingBackwardAtomic): one thread per top element (n, ctop, ph, pw); roi corners
// round(x1) * spatial_scale and (round(x2) + 1) * spatial_scale, sizes at least 0.1, bin
// edges floor / ceil of ph * bin + start clipped to the map, the average of channel
// (ctop * group_size + ph) * group_size + pw over the bin (0 when empty); backward adds
// top_diff / bin_area to each element of the bin (atomicAdd).
//
// The bin edges use an explicit fma(): nvcc contracts the fork's `ph * bin_size + start`
// into one (its default -fmad=true), and the CPU op rounds the same way in float32.
//
// Compiled at run time by CuPy (NVRTC); tests compile it with `nvcc -ptx`.

template <typename T>
__device__ void psroi_bin(const T* roi, const T spatial_scale, const int height,
                          const int width, const int group_size, const int ph, const int pw,
                          int* hstart, int* hend, int* wstart, int* wend) {
  const T roi_start_w = static_cast<T>(round(roi[1])) * spatial_scale;
  const T roi_start_h = static_cast<T>(round(roi[2])) * spatial_scale;
  const T roi_end_w = static_cast<T>(round(roi[3]) + 1.) * spatial_scale;
  const T roi_end_h = static_cast<T>(round(roi[4]) + 1.) * spatial_scale;

  // Force too small ROIs to be 1x1 (max in double, as the fork's max(T, double))
  const T roi_width = max(static_cast<double>(roi_end_w - roi_start_w), 0.1);
  const T roi_height = max(static_cast<double>(roi_end_h - roi_start_h), 0.1);

  const T bin_size_h = roi_height / static_cast<T>(group_size);
  const T bin_size_w = roi_width / static_cast<T>(group_size);

  int hs = floor(fma(static_cast<T>(ph), bin_size_h, roi_start_h));
  int ws = floor(fma(static_cast<T>(pw), bin_size_w, roi_start_w));
  int he = ceil(fma(static_cast<T>(ph + 1), bin_size_h, roi_start_h));
  int we = ceil(fma(static_cast<T>(pw + 1), bin_size_w, roi_start_w));
  // Add roi offsets and clip to input boundaries
  *hstart = min(max(hs, 0), height);
  *hend = min(max(he, 0), height);
  *wstart = min(max(ws, 0), width);
  *wend = min(max(we, 0), width);
}

template <typename T>
__device__ void psroi_pool_forward(const int nthreads, const T* bottom_data,
                                   const T spatial_scale, const int channels, const int height,
                                   const int width, const int group_size, const T* bottom_rois,
                                   const int output_dim, T* top_data) {
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < nthreads;
       index += blockDim.x * gridDim.x) {
    // The output is in order (n, ctop, ph, pw)
    const int pw = index % group_size;
    const int ph = (index / group_size) % group_size;
    const int ctop = (index / group_size / group_size) % output_dim;
    const int n = index / group_size / group_size / output_dim;

    const T* roi = bottom_rois + n * 5;
    const int roi_batch_ind = roi[0];
    int hstart, hend, wstart, wend;
    psroi_bin(roi, spatial_scale, height, width, group_size, ph, pw, &hstart, &hend, &wstart,
              &wend);
    const bool is_empty = (hend <= hstart) || (wend <= wstart);

    const int c = (ctop * group_size + ph) * group_size + pw;
    const T* plane = bottom_data + (static_cast<long long>(roi_batch_ind) * channels + c)
                                       * height * width;
    T out_sum = 0;
    for (int h = hstart; h < hend; ++h) {
      for (int w = wstart; w < wend; ++w) {
        out_sum += plane[h * width + w];
      }
    }
    const T bin_area = (hend - hstart) * (wend - wstart);
    top_data[index] = is_empty ? T(0) : out_sum / bin_area;
  }
}

template <typename T>
__device__ void psroi_pool_backward(const int nthreads, const T* top_diff,
                                    const T spatial_scale, const int channels,
                                    const int height, const int width, const int group_size,
                                    const T* bottom_rois, const int output_dim,
                                    T* bottom_diff) {
  for (int index = blockIdx.x * blockDim.x + threadIdx.x; index < nthreads;
       index += blockDim.x * gridDim.x) {
    const int pw = index % group_size;
    const int ph = (index / group_size) % group_size;
    const int ctop = (index / group_size / group_size) % output_dim;
    const int n = index / group_size / group_size / output_dim;

    const T* roi = bottom_rois + n * 5;
    const int roi_batch_ind = roi[0];
    int hstart, hend, wstart, wend;
    psroi_bin(roi, spatial_scale, height, width, group_size, ph, pw, &hstart, &hend, &wstart,
              &wend);
    const bool is_empty = (hend <= hstart) || (wend <= wstart);

    // The fork's mapping_channel: the channel its forward read.
    const int c = (ctop * group_size + ph) * group_size + pw;
    T* plane = bottom_diff + (static_cast<long long>(roi_batch_ind) * channels + c)
                                 * height * width;
    const T bin_area = (hend - hstart) * (wend - wstart);
    const T diff_val = is_empty ? T(0) : top_diff[index] / bin_area;
    for (int h = hstart; h < hend; ++h) {
      for (int w = wstart; w < wend; ++w) {
        atomicAdd(plane + h * width + w, diff_val);
      }
    }
  }
}

#define PSROI_POOL_KERNELS(T, SUFFIX)                                                      \
  extern "C" __global__ void psroi_pool_forward_##SUFFIX(                                  \
      const int nthreads, const T* bottom_data, const T spatial_scale, const int channels, \
      const int height, const int width, const int group_size, const T* bottom_rois,       \
      const int output_dim, T* top_data) {                                                 \
    psroi_pool_forward<T>(nthreads, bottom_data, spatial_scale, channels, height, width,   \
                          group_size, bottom_rois, output_dim, top_data);                  \
  }                                                                                        \
  extern "C" __global__ void psroi_pool_backward_##SUFFIX(                                 \
      const int nthreads, const T* top_diff, const T spatial_scale, const int channels,    \
      const int height, const int width, const int group_size, const T* bottom_rois,       \
      const int output_dim, T* bottom_diff) {                                              \
    psroi_pool_backward<T>(nthreads, top_diff, spatial_scale, channels, height, width,     \
                           group_size, bottom_rois, output_dim, bottom_diff);              \
  }

PSROI_POOL_KERNELS(float, float32)
PSROI_POOL_KERNELS(double, float64)
