//! Pure load balancing over snapshot providers: clock and RNG passed in
